package oauth

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/tokens"
)

const initialAccessToken = "iat-for-the-factory-line"

func withRegistration(o *Options) {
	o.RegistrationTokenHashes = [][]byte{RegistrationTokenHash(o.Key, "an-older-token"), RegistrationTokenHash(o.Key, initialAccessToken)}
	o.RegistrationScopes = []string{"openid", "offline_access", "telemetry:write", "speaker:play"}
}

func (e *env) register(t testing.TB, token string, metadata any) (*http.Response, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(metadata)
	var header []string
	if token != "" {
		header = []string{"Authorization", "Bearer " + token}
	}
	resp, body := e.do(t, e.srv.Client(), http.MethodPost, "/oauth2/register", "application/json", string(b), header...)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("register: %d, not JSON: %s", resp.StatusCode, body)
	}
	return resp, m
}

func TestRegisterThenGetTokens(t *testing.T) {
	e := newEnv(t, withRegistration)
	resp, m := e.register(t, initialAccessToken, map[string]any{
		"client_name": "telemetry collector", "grant_types": []string{"client_credentials"},
		"scope": "telemetry:write speaker:play", "token_endpoint_auth_method": "client_secret_basic",
		// Unknown metadata is ignored (RFC 7591 §2), thing_id included: only
		// administrators bind a client to a thing.
		"logo_uri": "https://example.org/logo.png", "thing_id": e.speaker.ID,
	})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("register: %d %v", resp.StatusCode, m)
	}
	id, _ := m["client_id"].(string)
	secret, _ := m["client_secret"].(string)
	if id == "" || secret == "" || m["client_secret_expires_at"] != float64(0) || m["client_id_issued_at"] == nil {
		t.Fatalf("response %v lacks the client information of RFC 7591 §3.2.1", m)
	}
	if m["scope"] != "telemetry:write speaker:play" || m["token_endpoint_auth_method"] != "client_secret_basic" || m["client_name"] != "telemetry collector" {
		t.Fatalf("registered metadata %v", m)
	}
	if _, ok := m["logo_uri"]; ok {
		t.Fatal("echoes metadata it ignored")
	}
	c, err := e.s.GetClient(t.Context(), id)
	if err != nil || c.ThingID != "" {
		t.Fatalf("stored client %+v %v", c, err)
	}

	cfg := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: e.srv.URL + "/oauth2/token", Scopes: []string{"telemetry:write"}}
	tok, err := cfg.Token(e.ctx())
	if err != nil {
		t.Fatalf("token for the registered client: %v", err)
	}
	claims, err := e.verifier.Inspect(t.Context(), tok.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL})
	if err != nil || claims.ClientID != id {
		t.Fatalf("claims %+v %v", claims, err)
	}

	// A public client for the device flow: no secret.
	resp, m = e.register(t, initialAccessToken, map[string]any{
		"client_name": "speaker app", "grant_types": []string{GrantDeviceCode, GrantRefreshToken}, "token_endpoint_auth_method": "none",
	})
	if resp.StatusCode != http.StatusCreated || m["client_secret"] != nil || m["client_secret_expires_at"] != nil {
		t.Fatalf("public client: %d %v", resp.StatusCode, m)
	}
	// The endpoint is advertised.
	if md := e.s.Metadata(); md.RegistrationEndpoint != e.srv.URL+"/oauth2/register" {
		t.Fatalf("registration_endpoint %q", md.RegistrationEndpoint)
	}
}

func TestRegisterNeedsInitialAccessToken(t *testing.T) {
	e := newEnv(t, withRegistration)
	ok := map[string]any{"client_name": "x", "grant_types": []string{"client_credentials"}}
	for name, tok := range map[string]string{"none": "", "wrong": "iat-for-the-factory-lin", "longer": initialAccessToken + "x"} {
		resp, m := e.register(t, tok, ok)
		if resp.StatusCode != http.StatusUnauthorized || m["error"] != "invalid_token" || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s token: %d %v", name, resp.StatusCode, m)
		}
	}
	resp, _ := e.do(t, e.srv.Client(), http.MethodPost, "/oauth2/register", "application/json", `{"client_name":"x","grant_types":["client_credentials"]}`,
		"Authorization", "Basic "+initialAccessToken)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Basic scheme: %d", resp.StatusCode)
	}
	if n, _, _ := e.s.ListClients(t.Context(), 0, 10); len(n) != 0 {
		t.Fatalf("refused registrations created %d clients", len(n))
	}

	// No initial access token configured: no registration endpoint at all.
	off := newEnv(t)
	resp, _ = off.do(t, off.srv.Client(), http.MethodPost, "/oauth2/register", "application/json", `{}`, "Authorization", "Bearer "+initialAccessToken)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("disabled registration: %d", resp.StatusCode)
	}
	if md := off.s.Metadata(); md.RegistrationEndpoint != "" {
		t.Fatalf("advertises %q while disabled", md.RegistrationEndpoint)
	}
}

func TestRegisterRefusesInvalidMetadata(t *testing.T) {
	e := newEnv(t, withRegistration)
	cc := []string{"client_credentials"}
	cases := []struct {
		name     string
		metadata map[string]any
		code     string
	}{
		{"http redirect off loopback", map[string]any{"client_name": "x", "grant_types": cc, "redirect_uris": []string{"http://example.org/cb"}}, "invalid_redirect_uri"},
		{"redirect with fragment", map[string]any{"client_name": "x", "grant_types": cc, "redirect_uris": []string{"https://example.org/cb#frag"}}, "invalid_redirect_uri"},
		{"relative redirect", map[string]any{"client_name": "x", "grant_types": cc, "redirect_uris": []string{"/cb"}}, "invalid_redirect_uri"},
		{"public client with client_credentials", map[string]any{"client_name": "x", "grant_types": cc, "token_endpoint_auth_method": "none"}, "invalid_client_metadata"},
		{"unknown auth method", map[string]any{"client_name": "x", "grant_types": cc, "token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"},
		{"unsupported grant", map[string]any{"client_name": "x", "grant_types": []string{"implicit"}}, "invalid_client_metadata"},
		// RFC 7591 §2: the default grant is authorization_code, which needs a redirect URI.
		{"default grant (authorization_code)", map[string]any{"client_name": "x"}, "invalid_redirect_uri"},
		{"response type code without authorization_code", map[string]any{"client_name": "x", "grant_types": cc, "response_types": []string{"code"}}, "invalid_client_metadata"},
		{"implicit response type", map[string]any{"client_name": "x", "redirect_uris": []string{"https://example.org/cb"}, "response_types": []string{"token"}}, "invalid_client_metadata"},
		{"tls_client_auth", map[string]any{"client_name": "x", "grant_types": cc, "token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"},
		{"scope of the server outside the allow-list", map[string]any{"client_name": "x", "grant_types": cc, "scope": "speaker:admin"}, "invalid_client_metadata"},
		{"unknown scope", map[string]any{"client_name": "x", "grant_types": cc, "scope": "admin:everything"}, "invalid_client_metadata"},
		{"no name", map[string]any{"grant_types": cc}, "invalid_client_metadata"},
		{"private_key_jwt without keys", map[string]any{"client_name": "x", "grant_types": cc, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"},
		{"jwks_uri", map[string]any{"client_name": "x", "grant_types": cc, "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://example.org/jwks"}, "invalid_client_metadata"},
		{"wrong type", map[string]any{"client_name": "x", "grant_types": "client_credentials"}, "invalid_client_metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, m := e.register(t, initialAccessToken, tc.metadata)
			if resp.StatusCode != http.StatusBadRequest || m["error"] != tc.code {
				t.Fatalf("%d %v, want 400 %s", resp.StatusCode, m, tc.code)
			}
		})
	}
	resp, _ := e.do(t, e.srv.Client(), http.MethodPost, "/oauth2/register", "application/x-www-form-urlencoded", "client_name=x", "Authorization", "Bearer "+initialAccessToken)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("form body: %d", resp.StatusCode)
	}
	if n, _, _ := e.s.ListClients(t.Context(), 0, 10); len(n) != 0 {
		t.Fatalf("refused registrations created %d clients", len(n))
	}
}

// An authorization-code client registers with the defaults of RFC 7591 §2
// (grant authorization_code, response type code); the old refusal ("this
// server has no authorization endpoint") is gone.
func TestRegisterAuthorizationCodeClient(t *testing.T) {
	e := newEnv(t, withRegistration)
	resp, m := e.register(t, initialAccessToken, map[string]any{
		"client_name": "web app", "redirect_uris": []string{"https://app.example.org/cb"}, "response_types": []string{"code"}, "scope": "openid",
	})
	if resp.StatusCode != http.StatusCreated || m["grant_types"].([]any)[0] != GrantAuthorizationCode {
		t.Fatalf("register: %d %v", resp.StatusCode, m)
	}
}

// TestAttackRegistrationScopes: a registration token gives only the scopes
// of the allow-list, and an MQTT pattern there allows no wider filter.
func TestAttackRegistrationScopes(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		withRegistration(o)
		o.Scopes = nil // any scope exists, as in the served configuration
		o.RegistrationScopes = []string{"openid", "mqtt:sub:things/+/telemetry", "mqtt:pub:things/${client.id}/events"}
	})
	cc := []string{"client_credentials"}
	for _, sc := range []string{"admin", "scim:write", "mqtt:pub:#", "mqtt:sub:#", "mqtt:sub:things/#", "mqtt:pub:things/+/events", "mqtt:pub:things/x/events"} {
		resp, m := e.register(t, initialAccessToken, map[string]any{"client_name": "x", "grant_types": cc, "scope": "openid " + sc})
		if desc, _ := m["error_description"].(string); resp.StatusCode != http.StatusBadRequest || m["error"] != "invalid_client_metadata" || !strings.Contains(desc, `"`+sc+`"`) {
			t.Errorf("scope %q: %d %v, want 400 invalid_client_metadata naming it", sc, resp.StatusCode, m)
		}
	}
	if n, _, _ := e.s.ListClients(t.Context(), 0, 10); len(n) != 0 {
		t.Fatalf("refused registrations created %d clients", len(n))
	}
	resp, m := e.register(t, initialAccessToken, map[string]any{"client_name": "x", "grant_types": cc,
		"scope": "mqtt:sub:things/t1/telemetry mqtt:pub:things/${client.id}/events"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("allowed scopes: %d %v", resp.StatusCode, m)
	}
	// Nothing configured: no scope at all.
	none := newEnv(t, func(o *Options) { withRegistration(o); o.RegistrationScopes = nil })
	if resp, m := none.register(t, initialAccessToken, map[string]any{"client_name": "x", "grant_types": cc, "scope": "openid"}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("empty allow-list: %d %v", resp.StatusCode, m)
	}
}

func TestRegistrationScopeAllowed(t *testing.T) {
	allowed := []string{"openid", "mqtt:sub:things/+/telemetry", "mqtt:sub:fleet/#", "mqtt:pub:things/${client.id}/events"}
	for _, tc := range []struct {
		scope string
		want  bool
	}{
		{"openid", true},
		{"openid2", false},
		{"admin", false},
		{"mqtt:sub:things/t1/telemetry", true},
		{"mqtt:sub:things/+/telemetry", true},
		{"mqtt:sub:things/#", false},               // wider
		{"mqtt:sub:things/+/#", false},             // wider
		{"mqtt:sub:things/+/telemetry/#", false},   // deeper
		{"mqtt:sub:things/${sub}/telemetry", true}, // one level
		{"mqtt:sub:fleet", true},                   // the parent of fleet/#
		{"mqtt:sub:fleet/a/b/#", true},
		{"mqtt:sub:#", false},
		{"mqtt:sub:+/telemetry", false},
		{"mqtt:pub:things/t1/telemetry", false}, // sub is not pub
		{"mqtt:pub:things/${client.id}/events", true},
		{"mqtt:pub:things/${sub}/events", false}, // another placeholder, another value
		{"mqtt:pub:things/c1/events", false},     // a literal is not the placeholder
		{"mqtt:sub:things/a#/telemetry", false},  // not a filter
		{"mqtt:sub:", false},
		{"mqtt:sub:$SYS/things/x/telemetry", false},
	} {
		if got := registrationScopeAllowed(allowed, tc.scope); got != tc.want {
			t.Errorf("registrationScopeAllowed(%q) = %v, want %v", tc.scope, got, tc.want)
		}
	}
	if err := checkRegistrationScopes([]string{"mqtt:sub:a/#/b"}); err == nil {
		t.Error("an allow-list entry that is no topic filter was accepted")
	}
	if err := checkRegistrationScopes([]string{`a"b`}); err == nil {
		t.Error("an allow-list entry that is no scope token was accepted")
	}
}

// FuzzRegistrationScopeAllowed: an allowed mqtt: scope never reaches a topic
// that the allow-list entry it matched does not reach.
func FuzzRegistrationScopeAllowed(f *testing.F) {
	f.Add("mqtt:sub:things/+/telemetry", "mqtt:sub:things/x/telemetry", "things/x/telemetry")
	f.Add("mqtt:sub:fleet/#", "mqtt:sub:fleet", "fleet")
	f.Add("mqtt:pub:a/${client.id}", "mqtt:pub:a/${client.id}", "a/b")
	f.Fuzz(func(t *testing.T, allowed, requested, name string) {
		if !registrationScopeAllowed([]string{allowed}, requested) || allowed == requested {
			return
		}
		af, aok := mqttFilter(allowed)
		rf, rok := mqttFilter(requested)
		if !aok || !rok || allowed[:9] != requested[:9] {
			t.Fatalf("%q allowed %q", allowed, requested)
		}
		if topic.ValidName(name) && topic.Covers(rf, name) && !topic.Covers(af, name) {
			t.Fatalf("%q allowed %q, which reaches %q", allowed, requested, name)
		}
	})
}
