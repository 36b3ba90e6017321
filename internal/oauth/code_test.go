package oauth

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func htmlUnescape(s string) string { return html.UnescapeString(s) }

// codeFor runs the flow for alice and returns a code and its verifier.
func (e *env) codeFor(t testing.TB, c *store.Client, scopes ...string) (string, string) {
	t.Helper()
	v := oauth2.GenerateVerifier()
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	back := e.authorize(t, b, e.oauthConfig(c, scopes...).AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "allow")
	code := back.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s", back)
	}
	return code, v
}

func codeForm(c *store.Client, code, verifier string) url.Values {
	return url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {c.ID}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {webRedirect}}
}

func TestCodeReplayRevokesGrant(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	tok, err := func() (*oauth2.Token, error) {
		code, v := e.codeFor(t, c, "offline_access", "speaker:play")
		tk, err := e.oauthConfig(c).Exchange(e.ctx(), code, oauth2.VerifierOption(v))
		if err == nil {
			resp, body := e.tokenRequest(t, codeForm(c, code, v))
			if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
				t.Fatalf("replay: %d %s", resp.StatusCode, body)
			}
		}
		return tk, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	if len(e.eventsOf(tokens.EventGrantRevoke)) != 1 {
		t.Fatal("no grant.revoke event")
	}
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantRefreshToken}, "client_id": {c.ID}, "refresh_token": {tok.RefreshToken}})
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("refresh after replay: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verifier.Inspect(e.ctx(), tok.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL}); err == nil {
		t.Fatal("access token still valid after replay")
	}
}

func TestCodeAttacks(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	other, _ := e.client(t, ClientSpec{Name: "other", Type: store.ClientPublic, RedirectURIs: []string{webRedirect},
		GrantTypes: []string{GrantAuthorizationCode}, Scopes: []string{"speaker:play"}})
	cases := map[string]func(code, v string) url.Values{
		"no verifier":    func(code, v string) url.Values { f := codeForm(c, code, v); f.Del("code_verifier"); return f },
		"wrong verifier": func(code, v string) url.Values { return codeForm(c, code, oauth2.GenerateVerifier()) },
		"plain verifier": func(code, v string) url.Values {
			return codeForm(c, code, oauth2.S256ChallengeFromVerifier(v)+"aaaaaaa")
		},
		"other client": func(code, v string) url.Values { return codeForm(other, code, v) },
		"other redirect": func(code, v string) url.Values {
			f := codeForm(c, code, v)
			f.Set("redirect_uri", "http://127.0.0.1:8400/cb")
			return f
		},
		"no redirect": func(code, v string) url.Values { f := codeForm(c, code, v); f.Del("redirect_uri"); return f },
	}
	for name, mk := range cases {
		code, v := e.codeFor(t, c, "speaker:play")
		resp, body := e.tokenRequest(t, mk(code, v))
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// A disabled user gets no tokens for a code issued before.
	code, v := e.codeFor(t, c, "speaker:play")
	if _, err := e.st.UpdateUser(e.ctx(), e.alice.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	resp, body := e.tokenRequest(t, codeForm(c, code, v))
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Errorf("disabled user: %d %s", resp.StatusCode, body)
	}
}

// TestCodeBoundByDPoPJKT: a code asked for with dpop_jkt (RFC 9449 §10) is
// redeemed only with a DPoP proof by that key.
func TestCodeBoundByDPoPJKT(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	h, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	codeBoundTo := func(jkt string) (string, string) {
		v := oauth2.GenerateVerifier()
		b := e.browser()
		e.signIn(t, b, "alice", alicePassword)
		back := e.authorize(t, b, e.oauthConfig(c, "speaker:play").AuthCodeURL("s", oauth2.S256ChallengeOption(v),
			oauth2.SetAuthURLParam("dpop_jkt", jkt)), "allow")
		code := back.Query().Get("code")
		if code == "" {
			t.Fatalf("no code: %s", back)
		}
		return code, v
	}
	for name, proof := range map[string][]string{"no proof": nil, "another key": {"DPoP", e.tokenProof(t, other)}} {
		code, v := codeBoundTo(h.JKT)
		resp, body := e.tokenRequest(t, codeForm(c, code, v), proof...)
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" || !strings.Contains(body, "dpop_jkt") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	code, v := codeBoundTo(h.JKT)
	resp, body := e.tokenRequest(t, codeForm(c, code, v), "DPoP", e.tokenProof(t, h))
	var tr tokenResponse
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("with the bound key: %d %s", resp.StatusCode, body)
	}
	// A malformed thumbprint is refused at the authorization endpoint.
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	resp, _ = e.get(t, b, e.oauthConfig(c, "speaker:play").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
		oauth2.SetAuthURLParam("dpop_jkt", "not-a-thumbprint")))
	if loc, _ := resp.Location(); loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("malformed dpop_jkt: %d %v", resp.StatusCode, loc)
	}
}

// TestIDTokenNamesItsGrantOnlyWhenUnbound: the ID token carries gid (which
// lets the broker take it as a password, mqtt.idTokenClients) only when the
// exchange's tokens are bearer tokens; with DPoP the ID token would
// otherwise be the bearer copy of a bound credential.
func TestIDTokenNamesItsGrantOnlyWhenUnbound(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	h := dpoptest.NewHolder(t)
	exchange := func(proof ...string) (idClaims, atClaims map[string]any) {
		v := oauth2.GenerateVerifier()
		b := e.browser()
		e.signIn(t, b, "alice", alicePassword)
		back := e.authorize(t, b, e.oauthConfig(c, "openid").AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "allow")
		resp, body := e.tokenRequest(t, codeForm(c, back.Query().Get("code"), v), proof...)
		var tr tokenResponse
		if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.IDToken == "" {
			t.Fatalf("exchange: %d %s", resp.StatusCode, body)
		}
		return jwtPayload(t, tr.IDToken), jwtPayload(t, tr.AccessToken)
	}
	id, at := exchange()
	if id["gid"] == nil || id["gid"] != at["gid"] {
		t.Errorf("bearer exchange: ID token gid %v, access token gid %v", id["gid"], at["gid"])
	}
	id, at = exchange("DPoP", e.tokenProof(t, h))
	if at["cnf"] == nil {
		t.Fatalf("the DPoP exchange gave an unbound access token: %v", at)
	}
	if _, ok := id["gid"]; ok {
		t.Errorf("DPoP exchange: the ID token names the grant %v", id["gid"])
	}
}

// jwtPayload decodes a JWT's claims without verifying it.
func jwtPayload(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := b64.DecodeString(parts[1])
	var m map[string]any
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("JWT payload %q: %v", parts[1], err)
	}
	return m
}
