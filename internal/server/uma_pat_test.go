package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/uma"
)

// TestUMAPATFromAuthorizationCode: a resource server that is not trusted
// gets its PAT with the owner's consent through a real authorization code
// flow (golang.org/x/oauth2 with PKCE); the PAT registers resources for
// that owner only, and the same client's client_credentials PAT is refused.
func TestUMAPATFromAuthorizationCode(t *testing.T) {
	w := newClaimsWorld(t)
	const cb = "http://127.0.0.1:9/photos/callback"
	id, secret := createClient(t, w.r, map[string]any{"client_name": "Photo album", "grant_types": []string{"authorization_code", "client_credentials"},
		"redirect_uris": []string{cb}, "scopes": []string{uma.ScopeProtection}})
	cfg := oauth2.Config{ClientID: id, ClientSecret: secret, RedirectURL: cb, Scopes: []string{uma.ScopeProtection},
		Endpoint: oauth2.Endpoint{AuthURL: w.r.base + "/oauth2/authorize", TokenURL: w.r.base + "/oauth2/token"}}
	verifier := oauth2.GenerateVerifier()

	// Carol, signed in, consents on the platform's page.
	carol := noFollow(w.signin(t, "carol"))
	resp, page := w.browse(t, carol, "GET", cfg.AuthCodeURL("st-pat", oauth2.S256ChallengeOption(verifier)), nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "Photo album") || !strings.Contains(page, uma.ScopeProtection) {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	f := formOf(page)
	f.Set("decision", "allow")
	resp, page = w.browse(t, carol, "POST", "/oauth2/authorize/decision", f, nil)
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || back.Query().Get("state") != "st-pat" || back.Query().Get("code") == "" {
		t.Fatalf("back at the resource server: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, w.r.client)
	tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	pat := tok.AccessToken

	// The PAT acts for carol: her resource, nobody else's.
	code, out := w.register(t, pat, `{"name":"Holiday album","resource_scopes":["view"]}`)
	if code != 201 {
		t.Fatalf("register with carol's PAT: %d %v", code, out)
	}
	album := out["_id"].(string)
	for _, owner := range []string{"alice", w.alice.ID} {
		if code, out := w.register(t, pat, `{"name":"Not hers","resource_scopes":["view"],"owner":`+jsonQuote(owner)+`}`); code != 403 {
			t.Errorf("registered for %s with carol's PAT: %d %v", owner, code, out)
		}
	}
	if code, out := w.call(t, nil, "GET", "/uma/resource_set/"+w.playlist, jsonHdr(pat), ""); code != 404 {
		t.Errorf("read alice's playlist with carol's PAT: %d %v", code, out)
	}
	// Bob asks for the album: carol sees the request.
	ticket := w.ticket(t, pat, `{"resource_id":`+jsonQuote(album)+`,"resource_scopes":["view"]}`)
	if code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {w.userToken(t, w.app.id, w.bob, nil)}, "claim_token_format": {uma.FormatAccessToken}}); code != 403 || out["error"] != "request_submitted" {
		t.Fatalf("bob asks for the album: %d %v", code, out)
	}
	if code, out := w.call(t, w.signin(t, "carol"), "GET", "/api/v1/uma/requests?status=pending", nil, ""); code != 200 || !strings.Contains(toJSON(out), album) {
		t.Fatalf("carol's requests: %d %v", code, out)
	}

	// The same client with client_credentials: no owner consented, it is
	// not a trusted resource server.
	cc := w.pat(t, clientCreds{id, secret})
	if code, out := w.register(t, cc, `{"name":"Any","resource_scopes":["view"],"owner":"carol"}`); code != 403 || out["error"] != "unauthorized_client" {
		t.Fatalf("client_credentials PAT of an untrusted resource server: %d %v", code, out)
	}
}
