package server

// Attacks through dynamic client registration (RFC 7591): whoever holds the
// registration token must not be able to mint a client with more power than
// oauth.registration.allowedScopes lists.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/config"
)

const attackRegistrationToken = "registration-token-for-the-attack-tests-0123"

func (r *running) registerClient(t *testing.T, metadata map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(metadata)
	req, _ := http.NewRequest("POST", r.base+"/oauth2/register", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+attackRegistrationToken)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("register: %d, not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

// TestAttackRegistrationTokenMintsNoAdministrators: with the documented
// configuration plus one MQTT pattern, the registration token cannot create a
// client with the admin, SCIM or wildcard MQTT scopes, and the scopes it can
// give are no SCIM credential.
func TestAttackRegistrationTokenMintsNoAdministrators(t *testing.T) {
	r := serve(t, func(c *config.Config) {
		c.OAuth.RegistrationToken = attackRegistrationToken
		c.OAuth.Registration.AllowedScopes = append(c.OAuth.Registration.AllowedScopes, "mqtt:sub:things/+/telemetry")
	})
	cc := []string{"client_credentials"}
	for _, tc := range []struct{ scope, named string }{
		{"admin scim:write mqtt:sub:# mqtt:pub:#", "admin"},
		{"scim:write", "scim:write"},
		{"scim:read", "scim:read"},
		{"openid admin", "admin"},
		{"mqtt:pub:#", "mqtt:pub:#"},
		{"mqtt:sub:#", "mqtt:sub:#"},
		{"mqtt:sub:things/#", "mqtt:sub:things/#"},
		{"mqtt:sub:things/+/+", "mqtt:sub:things/+/+"},
		{"mqtt:sub:things/+/telemetry/#", "mqtt:sub:things/+/telemetry/#"},
		{"mqtt:pub:things/+/telemetry", "mqtt:pub:things/+/telemetry"}, // sub allowed, not pub
		{"mqtt:sub:$SYS/#", "mqtt:sub:$SYS/#"},
	} {
		code, m := r.registerClient(t, map[string]any{"client_name": "attacker", "grant_types": cc, "scope": tc.scope})
		desc, _ := m["error_description"].(string)
		if code != http.StatusBadRequest || m["error"] != "invalid_client_metadata" || !strings.Contains(desc, `"`+tc.named+`"`) {
			t.Errorf("scope %q: %d %v, want 400 invalid_client_metadata naming %q", tc.scope, code, m, tc.named)
		}
	}
	if cs, n, err := r.p.Store.ListClients(context.Background(), 0, 10); err != nil || n != 0 {
		t.Fatalf("refused registrations left %d clients %v %v", n, cs, err)
	}

	// What the allow-list allows registers, gets tokens, and is refused at SCIM.
	code, m := r.registerClient(t, map[string]any{"client_name": "telemetry dashboard", "grant_types": cc,
		"scope": "mqtt:sub:things/t1/telemetry mqtt:sub:things/+/telemetry profile"})
	if code != http.StatusCreated {
		t.Fatalf("allowed scopes: %d %v", code, m)
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, r.client)
	for _, scopes := range [][]string{nil, {"mqtt:sub:things/t1/telemetry"}} {
		cfg := clientcredentials.Config{ClientID: m["client_id"].(string), ClientSecret: m["client_secret"].(string),
			TokenURL: r.base + "/oauth2/token", Scopes: scopes}
		tok, err := cfg.Token(ctx)
		if err != nil {
			t.Fatalf("token for the registered client: %v", err)
		}
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, r.base+"/scim/v2/Users", strings.NewReader(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"mallory"}`))
			req.Header.Set("Content-Type", "application/scim+json")
			tok.SetAuthHeader(req)
			resp, err := r.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s /scim/v2/Users with a registered client's token (scopes %v): %d, want 401/403", method, scopes, resp.StatusCode)
			}
		}
	}
	// A client asking for a scope it was not registered with gets none.
	cfg := clientcredentials.Config{ClientID: m["client_id"].(string), ClientSecret: m["client_secret"].(string),
		TokenURL: r.base + "/oauth2/token", Scopes: []string{"scim:write"}}
	if _, err := cfg.Token(ctx); err == nil {
		t.Error("a registered client got a token with scim:write")
	}
}
