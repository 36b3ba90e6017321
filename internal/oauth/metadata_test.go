package oauth

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

func TestMetadataAdvertisesWhatWorks(t *testing.T) {
	e := newEnv(t)
	c := e.srv.Client()
	var docs []map[string]any
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		resp, body := e.do(t, c, http.MethodGet, path, "", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, m)
	}
	m := docs[0]
	iss := e.srv.URL
	want := map[string]string{
		"issuer": iss, "token_endpoint": iss + "/oauth2/token", "jwks_uri": iss + "/oauth2/jwks",
		"device_authorization_endpoint": iss + "/oauth2/device_authorization", "revocation_endpoint": iss + "/oauth2/revoke",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %s", k, m[k], v)
		}
		if docs[1][k] != v {
			t.Errorf("openid-configuration %s = %v, want %s", k, docs[1][k], v)
		}
	}
	strs := func(k string) []string {
		var out []string
		for _, v := range m[k].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := strs("grant_types_supported"); !slices.Equal(got, supportedGrantTypes) {
		t.Errorf("grant types %v", got)
	}
	if got := strs("token_endpoint_auth_methods_supported"); !slices.Contains(got, "private_key_jwt") || !slices.Contains(got, "none") {
		t.Errorf("auth methods %v", got)
	}
	for _, alg := range strs("token_endpoint_auth_signing_alg_values_supported") {
		if alg == "none" || alg[:2] == "HS" {
			t.Errorf("advertises %s for client assertions", alg)
		}
	}
	// PKCE is S256 only (RFC 9700 §2.1.1), and only the code flow is offered.
	if got := strs("code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
		t.Errorf("code challenge methods %v", got)
	}
	if got := strs("response_types_supported"); !slices.Equal(got, []string{"code"}) {
		t.Errorf("response types %v", got)
	}
	// Registration is advertised only when initial access tokens are configured.
	if _, ok := m["registration_endpoint"]; ok {
		t.Error("advertises registration without initial access tokens")
	}
	// Every advertised endpoint answers.
	resp, _ := e.do(t, c, http.MethodGet, "/oauth2/jwks", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("jwks: %d", resp.StatusCode)
	}
	for _, p := range []string{"/oauth2/token", "/oauth2/device_authorization", "/oauth2/revoke", "/oauth2/introspect"} {
		resp, body := e.post(t, c, p, nil)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
}
