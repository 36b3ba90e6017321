package tokens

import (
	"strings"
	"testing"
	"time"
)

func TestAccessTokenWireFormat(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	c := accessClaims(clk.Now())
	c.Confirmation = &Confirmation{X5TS256: "x5t"}
	parts := strings.Split(e.accessToken(t, c), ".")
	var h map[string]any
	decodeSegment(t, parts[0], &h)
	// RFC 9068 §2.1: typ at+jwt; our header is alg, kid, typ and nothing else.
	if len(h) != 3 || h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != e.signingKID() {
		t.Fatalf("header %v", h)
	}
	var p map[string]any
	decodeSegment(t, parts[1], &p)
	want := map[string]any{
		"iss": testIssuer, "sub": "user-1", "aud": testAudience, "client_id": "client-1",
		"scope": "openid playlist:read", "gid": "grant-1", "thing": "thing-1",
		"iat": float64(clk.Now().Unix()), "exp": float64(c.ExpiresAt.Unix()), "auth_time": float64(c.AuthTime.Unix()),
		"cnf": map[string]any{"x5t#S256": "x5t"},
	}
	for name, v := range want {
		if got := p[name]; !equalJSON(got, v) {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if jti, _ := p["jti"].(string); len(jti) < 22 {
		t.Errorf("jti %q", jti)
	}
	if len(p) != len(want)+1 {
		t.Errorf("unexpected claims in %v", p)
	}
}

func equalJSON(a, b any) bool {
	am, ok1 := a.(map[string]any)
	bm, ok2 := b.(map[string]any)
	if ok1 && ok2 {
		if len(am) != len(bm) {
			return false
		}
		for k, v := range am {
			if !equalJSON(v, bm[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestIssueRefusesBadClaims(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	now := clk.Now()
	access := map[string]func(c *Claims){
		"no subject":        func(c *Claims) { c.Subject = "" },
		"no client":         func(c *Claims) { c.ClientID = "" },
		"no grant":          func(c *Claims) { c.GrantID = "" },
		"no audience":       func(c *Claims) { c.Audience = nil },
		"empty audience":    func(c *Claims) { c.Audience = []string{""} },
		"no expiry":         func(c *Claims) { c.ExpiresAt = time.Time{} },
		"expiry before iat": func(c *Claims) { c.ExpiresAt = now.Add(-time.Second) },
		"too long":          func(c *Claims) { c.ExpiresAt = now.Add(2 * time.Hour) },
		"scope with space":  func(c *Claims) { c.Scope = []string{"a b"} },
		"empty scope":       func(c *Claims) { c.Scope = []string{""} },
		"empty cnf":         func(c *Claims) { c.Confirmation = &Confirmation{} },
	}
	for name, mutate := range access {
		c := accessClaims(now)
		mutate(&c)
		if _, err := e.is.AccessToken(c); err == nil {
			t.Errorf("access token with %s issued", name)
		}
	}
	id := map[string]func(c *IDClaims){
		"no subject":               func(c *IDClaims) { c.Subject = "" },
		"two audiences and no azp": func(c *IDClaims) { c.Audience = []string{"a", "b"} },
		"extra overriding iss":     func(c *IDClaims) { c.Extra = map[string]any{"iss": "https://evil.example"} },
		"extra overriding nonce":   func(c *IDClaims) { c.Extra = map[string]any{"nonce": "x"} },
	}
	for name, mutate := range id {
		c := IDClaims{Subject: "user-1", Audience: []string{"client-1"}, ExpiresAt: now.Add(time.Minute)}
		mutate(&c)
		if _, err := e.is.IDToken(c); err == nil {
			t.Errorf("ID token with %s issued", name)
		}
	}
	if _, err := NewIssuer(e.keys, "https://id.example.com/?tenant=1"); err == nil {
		t.Error("issuer with a query accepted")
	}
}
