package oauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
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

// resourceServer registers the confidential client an API introspects with.
func (e *env) resourceServer(t testing.TB) (id, secret string) {
	c, secret := e.client(t, ClientSpec{Name: "speaker API", GrantTypes: []string{GrantClientCredentials}})
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
	rsID, rsSecret := e.resourceServer(t)
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
	rsID, _ := e.resourceServer(t)
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
	rsID, rsSecret := e.resourceServer(t)
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
	rsID, rsSecret := e.resourceServer(t)
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
	rsID, rsSecret := e.resourceServer(t)
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
