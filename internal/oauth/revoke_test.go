package oauth

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

func (e *env) revoke(t testing.TB, clientID, token, hint string) (*http.Response, string) {
	t.Helper()
	form := url.Values{"client_id": {clientID}, "token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	return e.post(t, e.srv.Client(), "/oauth2/revoke", form)
}

func TestRevokeRefreshToken(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c)
	if resp, body := e.revoke(t, c.ID, tr.RefreshToken, "refresh_token"); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("access token after revocation: %v", err)
	}
	if resp, _, _ := e.refresh(t, c.ID, tr.RefreshToken); resp.StatusCode != 400 {
		t.Fatal("refresh after revocation")
	}
	// Revoking again, or an unknown token, is still 200 (RFC 7009 §2.2).
	for _, tok := range []string{tr.RefreshToken, "tir_unknown", "not-a-token"} {
		if resp, body := e.revoke(t, c.ID, tok, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke %q: %d %s", tok, resp.StatusCode, body)
		}
	}
}

func TestRevokeAccessTokenRevokesItsGrant(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c)
	if resp, body := e.revoke(t, c.ID, tr.AccessToken, "access_token"); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("access token after revocation: %v", err)
	}
	if resp, _, _ := e.refresh(t, c.ID, tr.RefreshToken); resp.StatusCode != 400 {
		t.Fatal("the grant's refresh token survived")
	}
}

func TestRevokeRefusesOtherClientsTokens(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	other, _ := e.client(t, ClientSpec{Name: "other", Type: store.ClientPublic, GrantTypes: []string{GrantDeviceCode}})
	tr := e.pair(t, c)
	if resp, body := e.revoke(t, other.ID, tr.AccessToken, ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("other client's access token: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); err != nil {
		t.Fatalf("another client revoked the grant: %v", err)
	}
	if resp, body := e.revoke(t, "nobody", tr.AccessToken, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown client: %d %s", resp.StatusCode, body)
	}
}

// TestEveryRevocationIsAudited: a grant revoked by its client (RFC 7009) or
// by the token endpoint's replay rules leaves one grant.revoke record in the
// audit log, with the client as actor and the reason: the trail an operator
// replays after restoring a backup (docs/deployment.md) misses none of them.
func TestEveryRevocationIsAudited(t *testing.T) {
	cases := []struct {
		name, reason string
		revoke       func(e *env, c *store.Client, tr tokenResponse)
	}{
		{"RFC 7009, refresh token", "revoked by the client (RFC 7009)", func(e *env, c *store.Client, tr tokenResponse) {
			e.revoke(t, c.ID, tr.RefreshToken, "refresh_token")
		}},
		{"RFC 7009, access token", "revoked by the client (RFC 7009)", func(e *env, c *store.Client, tr tokenResponse) {
			e.revoke(t, c.ID, tr.AccessToken, "")
		}},
		{"refresh token reuse", "refresh token reuse", func(e *env, c *store.Client, tr tokenResponse) {
			e.refresh(t, c.ID, tr.RefreshToken)
			e.refresh(t, c.ID, tr.RefreshToken)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.speakerClient(t)
			tr := e.pair(t, c)
			claims, err := e.verify(tr.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			tc.revoke(e, c, tr)
			// Revoking the revoked grant again records nothing more.
			e.revoke(t, c.ID, tr.AccessToken, "")
			e.refresh(t, c.ID, tr.RefreshToken)
			recs, err := e.st.ListAudit(e.ctx(), store.AuditQuery{Target: &store.Ref{Kind: "grant", ID: claims.GrantID}, Action: store.TextMatch{Value: "grant.revoke"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Actor != "client:"+c.ID || !strings.Contains(string(recs[0].Detail), `"reason":"`+tc.reason+`"`) {
				t.Fatalf("audit records of the grant: %+v", recs)
			}
			if evs := e.eventsOf(tokens.EventGrantRevoke); len(evs) != 1 {
				t.Fatalf("grant.revoke events: %+v", evs)
			}
		})
	}
}
