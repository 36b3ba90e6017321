package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
)

// introspectAs posts an introspection request with the given authentication.
func (e *env) introspectAs(t testing.TB, token string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("token", token)
	return e.post(t, e.srv.Client(), "/oauth2/introspect", form, header...)
}

// resourceServer registers the confidential client an API introspects
// with, a resource server of audiences (oauth.resourceServers).
func (e *env) resourceServer(t testing.TB, audiences ...string) (id, secret string) {
	c, secret := e.client(t, ClientSpec{Name: "speaker API", GrantTypes: []string{GrantClientCredentials}})
	e.resourceServers[c.ID] = audiences
	return c.ID, secret
}

// introspected introspects and decodes a 200 answer.
func (e *env) introspected(t testing.TB, token string, form url.Values, header ...string) map[string]any {
	t.Helper()
	resp, body := e.introspectAs(t, token, form, header...)
	return decodeIntrospection(t, resp, body)
}

func decodeIntrospection(t testing.TB, resp *http.Response, body string) map[string]any {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspection: %d %s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store", cc)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not JSON: %s", body)
	}
	return m
}

// wantInactive checks the answer is exactly {"active":false}: nothing about
// an inactive token leaks (RFC 7662 §2.2).
func wantInactive(t testing.TB, what string, m map[string]any) {
	t.Helper()
	if len(m) != 1 || m["active"] != false {
		t.Fatalf("%s: %v, want only active:false", what, m)
	}
}

func TestIntrospectActiveAccessToken(t *testing.T) {
	e := newEnv(t)
	rsID, rsSecret := e.resourceServer(t, e.srv.URL)
	c := e.speakerClient(t)
	tr := e.pair(t, c)

	m := e.introspected(t, tr.AccessToken, url.Values{"token_type_hint": {"access_token"}}, basic(rsID, rsSecret)...)
	claims, err := e.verify(tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"active": true, "sub": e.alice.ID, "client_id": c.ID, "scope": tr.Scope, "iss": e.srv.URL,
		"token_type": "Bearer", "gid": claims.GrantID, "jti": claims.ID,
		"exp": float64(claims.ExpiresAt.Unix()), "iat": float64(claims.IssuedAt.Unix()),
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if aud, _ := m["aud"].([]any); len(aud) != 1 || aud[0] != e.srv.URL {
		t.Errorf("aud = %v", m["aud"])
	}
	if _, ok := m["cnf"]; ok {
		t.Error("cnf on a bearer token")
	}
	// An unknown or wrong hint is ignored (RFC 7662 §2.1).
	for _, hint := range []string{"weird", "refresh_token"} {
		if m := e.introspected(t, tr.AccessToken, url.Values{"token_type_hint": {hint}}, basic(rsID, rsSecret)...); m["active"] != true {
			t.Fatalf("hint %s: %v", hint, m)
		}
	}
}

func TestIntrospectRefusesUnauthenticatedCallers(t *testing.T) {
	e := newEnv(t)
	rsID, _ := e.resourceServer(t, e.srv.URL)
	c := e.speakerClient(t)
	tr := e.pair(t, c)
	cases := []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"no client authentication", nil, nil},
		{"public client", url.Values{"client_id": {c.ID}}, nil},
		{"confidential client without its secret", url.Values{"client_id": {rsID}}, nil},
		{"wrong secret", nil, basic(rsID, "guess")},
		{"unknown client", nil, basic("nobody", "x")},
		{"bearer token as credentials", nil, []string{"Authorization", "Bearer " + tr.AccessToken}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.introspectAs(t, tr.AccessToken, tc.form, tc.header...)
			if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" {
				t.Fatalf("%d %s, want 401 invalid_client", resp.StatusCode, body)
			}
			if strings.Contains(body, e.alice.ID) || strings.Contains(body, "active") {
				t.Fatalf("refusal leaks the token: %s", body)
			}
		})
	}
	// RFC 7662 §2.1: POST only.
	resp, _ := e.do(t, e.srv.Client(), http.MethodGet, "/oauth2/introspect?token="+url.QueryEscape(tr.AccessToken), "", "")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

func TestIntrospectInactiveTokens(t *testing.T) {
	e := newEnv(t)
	rsID, rsSecret := e.resourceServer(t, e.srv.URL)
	auth := basic(rsID, rsSecret)
	c := e.speakerClient(t)
	tr := e.pair(t, c)

	parts := strings.Split(tr.AccessToken, ".")
	sig := []byte(parts[2])
	sig[5] ^= 1
	raw, _ := b64.DecodeString(parts[1])
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	payload["sub"] = e.bob.ID
	raw, _ = json.Marshal(payload)
	forged := parts[0] + "." + b64.EncodeToString(raw) + "." + parts[2]
	for name, tok := range map[string]string{
		"tampered signature": parts[0] + "." + parts[1] + "." + string(sig),
		"swapped subject":    forged,
		"unsigned":           parts[0] + "." + parts[1] + ".",
		"garbage":            "not-a-token",
		// Refresh tokens are never active here: looking them up would rotate them.
		"refresh token": tr.RefreshToken,
	} {
		wantInactive(t, name, e.introspected(t, tok, nil, auth...))
	}
	// The introspected refresh token was not consumed.
	resp, body, tr2 := e.refresh(t, c.ID, tr.RefreshToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh after introspection: %d %s", resp.StatusCode, body)
	}

	// A disabled user's tokens are inactive at once.
	disable(t, e.ids, e.alice.ID)
	wantInactive(t, "disabled user", e.introspected(t, tr2.AccessToken, nil, auth...))
	resp, body = e.introspectAs(t, "", nil, auth...)
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_request" {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}
}

func TestIntrospectRevokedToken(t *testing.T) {
	e := newEnv(t)
	rsID, rsSecret := e.resourceServer(t, e.srv.URL)
	c := e.speakerClient(t)
	tr := e.pair(t, c)
	if m := e.introspected(t, tr.AccessToken, nil, basic(rsID, rsSecret)...); m["active"] != true {
		t.Fatalf("before revocation: %v", m)
	}
	if resp, body := e.revoke(t, c.ID, tr.RefreshToken, "refresh_token"); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	wantInactive(t, "revoked grant", e.introspected(t, tr.AccessToken, nil, basic(rsID, rsSecret)...))

	// Revoked in the store only (another node; its event not here yet):
	// introspection asks the store, so the token is inactive all the same.
	cc, ccSecret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}})
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}}, basic(cc.ID, ccSecret)...)
	var tok tokenResponse
	if err := json.Unmarshal([]byte(body), &tok); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("client_credentials: %d %s", resp.StatusCode, body)
	}
	claims, err := e.verify(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.RevokeGrant(t.Context(), claims.GrantID, claims.IssuedAt); err != nil {
		t.Fatal(err)
	}
	wantInactive(t, "grant revoked in the store", e.introspected(t, tok.AccessToken, nil, basic(rsID, rsSecret)...))
}

// TestIntrospectOwnRefreshToken: a confidential client may ask about its own
// refresh token without using it up; to anyone else it is inactive, and so is
// a rotated one.
func TestIntrospectOwnRefreshToken(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "speaker backend", ThingID: e.speaker.ID,
		GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}, Scopes: []string{"speaker:play", "offline_access"}})
	d := e.startDeviceAuth(t, c.ID, secret)
	e.approve(t, d.UserCode, e.alice, alicePassword)
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantDeviceCode}, "device_code": {d.DeviceCode}}, basic(c.ID, secret)...)
	var tr tokenResponse
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.RefreshToken == "" {
		t.Fatalf("device_code: %d %s", resp.StatusCode, body)
	}
	m := e.introspected(t, tr.RefreshToken, nil, basic(c.ID, secret)...)
	if m["active"] != true || m["sub"] != e.alice.ID || m["client_id"] != c.ID || m["scope"] != "speaker:play offline_access" {
		t.Fatalf("own refresh token: %v", m)
	}
	rsID, rsSecret := e.resourceServer(t, e.srv.URL)
	wantInactive(t, "another client's refresh token", e.introspected(t, tr.RefreshToken, nil, basic(rsID, rsSecret)...))
	old := tr.RefreshToken
	resp, body = e.tokenRequest(t, url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {old}}, basic(c.ID, secret)...)
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh after introspection: %d %s", resp.StatusCode, body)
	}
	wantInactive(t, "rotated refresh token", e.introspected(t, old, nil, basic(c.ID, secret)...))
	if m := e.introspected(t, tr.RefreshToken, nil, basic(c.ID, secret)...); m["active"] != true {
		t.Fatalf("new refresh token: %v", m)
	}
	disable(t, e.ids, e.alice.ID)
	wantInactive(t, "refresh token of a disabled user", e.introspected(t, tr.RefreshToken, nil, basic(c.ID, secret)...))
}

// TestAttackIntrospectOthersTokens: an access token is described only to
// the client it was issued to, with all its audiences, and to a resource
// server of one of its audiences (oauth.resourceServers), with only those;
// every other authenticated client gets exactly {"active":false}, as for a
// token that does not exist (RFC 7662 §2.2, §4; RFC 9701 §4). Tokens come
// from golang.org/x/oauth2's client credentials, one DPoP-bound.
func TestAttackIntrospectOthersTokens(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	spec := ClientSpec{GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}}
	spec.Name = "backend"
	backend, backendSecret := e.client(t, spec)
	spec.Name = "another backend"
	other, otherSecret := e.client(t, spec)
	mqttRS, mqttSecret := e.resourceServer(t, mqttResource)
	gatewayRS, gatewaySecret := e.resourceServer(t, gatewayResource)
	tokenOf := func(ctx context.Context, resources ...string) string {
		t.Helper()
		cc := clientcredentials.Config{ClientID: backend.ID, ClientSecret: backendSecret, TokenURL: e.srv.URL + PathToken,
			EndpointParams: url.Values{"resource": resources}, AuthStyle: oauth2.AuthStyleInHeader}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("client credentials for %v: %v", resources, err)
		}
		return tok.AccessToken
	}
	forGateway := tokenOf(e.ctx(), gatewayResource)
	forBoth := tokenOf(e.ctx(), gatewayResource, mqttResource)
	holder := dpoptest.NewHolder(t)
	bound := tokenOf(e.dpopCtx(t, holder), mqttResource)

	backendAuth, otherAuth := basic(backend.ID, backendSecret), basic(other.ID, otherSecret)
	mqttAuth, gatewayAuth := basic(mqttRS, mqttSecret), basic(gatewayRS, gatewaySecret)
	cases := []struct {
		name  string
		token string
		auth  []string
		aud   []string // nil: inactive to this caller
	}{
		{"its own client", forBoth, backendAuth, []string{gatewayResource, mqttResource}},
		{"another confidential client", forBoth, otherAuth, nil},
		{"another confidential client, the DPoP-bound token", bound, otherAuth, nil},
		{"the resource server of the token's audience", forGateway, gatewayAuth, []string{gatewayResource}},
		{"a resource server of another audience", forGateway, mqttAuth, nil},
		{"a resource server of one of two audiences", forBoth, mqttAuth, []string{mqttResource}},
		{"its own client, the DPoP-bound token", bound, backendAuth, []string{mqttResource}},
		{"the resource server of the DPoP-bound token", bound, mqttAuth, []string{mqttResource}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := e.introspected(t, tc.token, nil, tc.auth...)
			if tc.aud == nil {
				wantInactive(t, tc.name, m)
				return
			}
			var aud []string
			for _, a := range m["aud"].([]any) {
				aud = append(aud, a.(string))
			}
			if m["active"] != true || m["client_id"] != backend.ID || m["scope"] != "telemetry:write" || !slices.Equal(aud, tc.aud) {
				t.Fatalf("%v, want active with aud %v", m, tc.aud)
			}
			if tc.token == bound {
				// RFC 9449 §6.2: the resource server learns the key to check.
				if cnf, _ := m["cnf"].(map[string]any); m["token_type"] != "DPoP" || cnf["jkt"] != holder.JKT {
					t.Fatalf("DPoP-bound token: %v", m)
				}
			}
		})
	}

	// Public clients and devices may not introspect, not even their own
	// tokens: they are refused before any token is looked at.
	sp := e.speakerClient(t)
	own := e.pair(t, sp)
	resp, body := e.introspectAs(t, own.AccessToken, url.Values{"client_id": {sp.ID}})
	if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" {
		t.Fatalf("a public client introspecting its own token: %d %s", resp.StatusCode, body)
	}

	// Revoked: inactive to everyone, its own client and its resource servers too.
	if resp, body := e.post(t, e.srv.Client(), "/oauth2/revoke", url.Values{"token": {forBoth}, "token_type_hint": {"access_token"}}, backendAuth...); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	for name, auth := range map[string][]string{"its own client": backendAuth, "a resource server of its audience": mqttAuth, "another client": otherAuth} {
		wantInactive(t, "revoked, to "+name, e.introspected(t, forBoth, nil, auth...))
	}
}

// TestDiscloseRule is the rule both introspection doors follow, case by case.
func TestDiscloseRule(t *testing.T) {
	const a, b, c = "urn:a", "urn:b", "urn:c"
	rs := ResourceServers{"rs-a": {a}, "rs-ac": {a, c}}
	cases := []struct {
		name                string
		caller, tokenClient string
		aud                 []string
		shown               []string
		ok                  bool
	}{
		{"its own client sees every audience", "app", "app", []string{a, b}, []string{a, b}, true},
		{"its own client, though also a resource server", "rs-a", "rs-a", []string{b}, []string{b}, true},
		{"a resource server sees its audience only", "rs-a", "app", []string{a, b}, []string{a}, true},
		{"a resource server of two sees both, in the token's order", "rs-ac", "app", []string{c, b, a}, []string{c, a}, true},
		{"a resource server of another audience", "rs-a", "app", []string{b}, nil, false},
		{"a client that is no resource server", "other", "app", []string{a}, nil, false},
		{"a token without a client", "other", "", []string{a}, nil, false},
		{"no caller", "", "", []string{a}, nil, false},
		{"a token without audience", "rs-a", "app", nil, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			shown, ok := rs.Disclose(tc.caller, tc.tokenClient, tc.aud)
			if ok != tc.ok || !slices.Equal(shown, tc.shown) {
				t.Fatalf("Disclose(%q, %q, %v) = %v, %v; want %v, %v", tc.caller, tc.tokenClient, tc.aud, shown, ok, tc.shown, tc.ok)
			}
		})
	}
	if _, ok := ResourceServers(nil).Disclose("rs-a", "app", []string{a}); ok {
		t.Fatal("no resource servers configured: another client's token disclosed")
	}
}
