package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// pair runs the device flow for alice and returns the token response.
func (e *env) pair(t testing.TB, c *store.Client) tokenResponse {
	t.Helper()
	d := e.startDevice(t, c.ID)
	e.approve(t, d.UserCode, e.alice, alicePassword)
	resp, body := e.pollDevice(t, c.ID, d.DeviceCode)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device token: %d %s", resp.StatusCode, body)
	}
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	return tr
}

func (e *env) refresh(t testing.TB, clientID, rt string, extra ...string) (*http.Response, string, tokenResponse) {
	t.Helper()
	form := url.Values{"grant_type": {GrantRefreshToken}, "client_id": {clientID}, "refresh_token": {rt}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	resp, body := e.tokenRequest(t, form)
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	return resp, body, tr
}

func (e *env) verify(tok string) (*tokens.Claims, error) {
	return e.verifier.Inspect(context.Background(), tok, tokens.VerifyOptions{Audience: e.srv.URL})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	first := e.pair(t, c)
	resp, body, second := e.refresh(t, c.ID, first.RefreshToken)
	if resp.StatusCode != http.StatusOK || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("rotation: %d %s", resp.StatusCode, body)
	}
	claims, err := e.verify(second.AccessToken)
	if err != nil || claims.Subject != e.alice.ID || claims.ClientID != c.ID {
		t.Fatalf("refreshed access token: %+v %v", claims, err)
	}
	// A narrower scope for the access token only; a wider one is refused.
	if resp, body, tr := e.refresh(t, c.ID, second.RefreshToken, "scope", "speaker:admin"); resp.StatusCode != 400 || oauthError(t, body) != "invalid_scope" {
		t.Fatalf("wider scope: %d %s %+v", resp.StatusCode, body, tr)
	}
	// The refused request did not use the token up.
	resp, body, third := e.refresh(t, c.ID, second.RefreshToken, "scope", "speaker:play")
	if resp.StatusCode != http.StatusOK || third.Scope != "speaker:play" {
		t.Fatalf("narrower scope after a refused request: %d %s", resp.StatusCode, body)
	}
	_, _, fourth := e.refresh(t, c.ID, third.RefreshToken)
	if fourth.RefreshToken == "" || fourth.Scope != "speaker:play offline_access" {
		t.Fatalf("rotated token lost the grant's scopes: %+v", fourth)
	}
	other := e.pair(t, c) // a second pairing: a grant of its own
	// Reuse of a rotated token: the grant dies with every token in it.
	resp, body, _ = e.refresh(t, c.ID, third.RefreshToken)
	if resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("reuse: %d %s", resp.StatusCode, body)
	}
	if resp, body, _ := e.refresh(t, c.ID, fourth.RefreshToken); resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("fresh token after reuse: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(fourth.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("access token after reuse: %v, want ErrRevoked", err)
	}
	if evs := e.eventsOf(tokens.EventGrantRevoke); len(evs) == 0 || evs[len(evs)-1].Details["exp"] == "" {
		t.Fatalf("grant.revoke events %+v", evs)
	}
	// The other pairing's grant is untouched.
	if _, err := e.verify(other.AccessToken); err != nil {
		t.Fatalf("other grant affected: %v", err)
	}
}

func TestRefreshRefusedForDisabledSubjects(t *testing.T) {
	t.Run("user", func(t *testing.T) {
		e := newEnv(t)
		c := e.speakerClient(t)
		tr := e.pair(t, c)
		disable(t, e.ids, e.alice.ID)
		if resp, body, _ := e.refresh(t, c.ID, tr.RefreshToken); resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
			t.Fatalf("disabled user: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("thing", func(t *testing.T) {
		e := newEnv(t)
		c := e.speakerClient(t)
		tr := e.pair(t, c)
		if _, err := e.ids.UpdateThing(context.Background(), "test", e.speaker.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
			t.Fatal(err)
		}
		if resp, body, _ := e.refresh(t, c.ID, tr.RefreshToken); resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
			t.Fatalf("disabled thing: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("revoked grant", func(t *testing.T) {
		e := newEnv(t)
		c := e.speakerClient(t)
		tr := e.pair(t, c)
		claims, _ := e.verify(tr.AccessToken)
		if err := e.s.revokeGrant(context.Background(), "test", claims.GrantID, "test"); err != nil {
			t.Fatal(err)
		}
		if resp, body, _ := e.refresh(t, c.ID, tr.RefreshToken); resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
			t.Fatalf("revoked grant: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("another client", func(t *testing.T) {
		e := newEnv(t)
		c := e.speakerClient(t)
		thief, _ := e.client(t, ClientSpec{Name: "thief", Type: store.ClientPublic, GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}})
		tr := e.pair(t, c)
		if resp, body, _ := e.refresh(t, thief.ID, tr.RefreshToken); resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
			t.Fatalf("other client: %d %s", resp.StatusCode, body)
		}
		if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
			t.Fatalf("leaked grant not revoked: %v", err)
		}
	})
}

// TestBoundRefreshWithoutKeyDoesNotBurnIt: a DPoP-bound refresh token
// presented without its key (a thief's attempt, or a client's bug) is refused
// and stays usable by its holder; the grant survives.
func TestBoundRefreshWithoutKeyDoesNotBurnIt(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	h, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	code, v := e.codeFor(t, c, "openid", "offline_access")
	tok, err := e.oauthConfig(c).Exchange(e.dpopCtx(t, h), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {GrantRefreshToken}, "client_id": {c.ID}, "refresh_token": {tok.RefreshToken}}
	for name, header := range map[string][]string{"no proof": nil, "another key": {"DPoP", e.tokenProof(t, other)}} {
		resp, body := e.tokenRequest(t, form, header...)
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	if n := len(e.eventsOf(tokens.EventGrantRevoke)); n != 0 {
		t.Fatalf("%d grants revoked by refusals", n)
	}
	resp, body := e.tokenRequest(t, form, "DPoP", e.tokenProof(t, h))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the holder's refresh after the refusals: %d %s", resp.StatusCode, body)
	}
}
