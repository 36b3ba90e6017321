package oauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

// TestTokenCacheSeesOtherProcesses changes clients and grants behind the
// server's back, through another store on the same SQLite file (as the CLI
// does from its own process, with no event reaching the server), right after
// the token endpoint cached them: every change must hold at the next request.
func TestTokenCacheSeesOtherProcesses(t *testing.T) {
	e := newEnv(t)
	if e.s.cache == nil {
		t.Fatal("the SQLite store should give the token endpoint its cache")
	}
	ctx := t.Context()
	other, err := sqlite.Open(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	cc := url.Values{"grant_type": {GrantClientCredentials}}
	grantOf := func(id, secret string) (int, string) {
		t.Helper()
		resp, body := e.tokenRequest(t, cc, basic(id, secret)...)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, body
		}
		var tr tokenResponse
		if err := json.Unmarshal([]byte(body), &tr); err != nil {
			t.Fatal(err)
		}
		claims, err := e.verifier.Inspect(ctx, tr.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		return resp.StatusCode, claims.GrantID
	}
	warm := func(id, secret string) string {
		t.Helper()
		var gid string
		for range 3 {
			code, g := grantOf(id, secret)
			if code != http.StatusOK {
				t.Fatalf("token: %d %s", code, g)
			}
			gid = g
		}
		return gid
	}

	t.Run("revoked own grant", func(t *testing.T) {
		c, secret := e.client(t, ClientSpec{Name: "svc-revoke", GrantTypes: []string{GrantClientCredentials}})
		gid := warm(c.ID, secret)
		if err := other.RevokeGrant(ctx, gid, time.Now()); err != nil {
			t.Fatal(err)
		}
		if code, got := grantOf(c.ID, secret); code != http.StatusOK || got == gid {
			t.Fatalf("after revoking grant %s elsewhere: %d, token of grant %s", gid, code, got)
		}
	})
	t.Run("disabled client", func(t *testing.T) {
		c, secret := e.client(t, ClientSpec{Name: "svc-disable", GrantTypes: []string{GrantClientCredentials}})
		warm(c.ID, secret)
		if _, err := other.UpdateClient(ctx, c.ID, 0, func(c *store.Client) error { c.Disabled = true; return nil }); err != nil {
			t.Fatal(err)
		}
		if code, body := grantOf(c.ID, secret); code != http.StatusUnauthorized {
			t.Fatalf("disabled elsewhere: %d %s", code, body)
		}
	})
	t.Run("deleted client", func(t *testing.T) {
		c, secret := e.client(t, ClientSpec{Name: "svc-delete", GrantTypes: []string{GrantClientCredentials}})
		warm(c.ID, secret)
		if err := other.DeleteClient(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if code, body := grantOf(c.ID, secret); code != http.StatusUnauthorized {
			t.Fatalf("deleted elsewhere: %d %s", code, body)
		}
	})
	t.Run("narrowed scopes", func(t *testing.T) {
		c, secret := e.client(t, ClientSpec{Name: "svc-scopes", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"speaker:play", "telemetry:write"}})
		warm(c.ID, secret)
		if _, err := other.UpdateClient(ctx, c.ID, 0, func(c *store.Client) error { c.Scopes = []string{"speaker:play"}; return nil }); err != nil {
			t.Fatal(err)
		}
		resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}, "scope": {"telemetry:write"}}, basic(c.ID, secret)...)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("a scope taken away elsewhere: %d %s", resp.StatusCode, body)
		}
	})
}
