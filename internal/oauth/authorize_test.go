package oauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/store"
)

const webRedirect = "https://app.example.com/callback"

// webClient registers a public client for the authorization code flow.
func (e *env) webClient(t testing.TB) *store.Client {
	c, _ := e.client(t, ClientSpec{Name: "Acme web app", Type: store.ClientPublic, RedirectURIs: []string{webRedirect, "http://127.0.0.1:8400/cb"},
		GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, Scopes: []string{"openid", "offline_access", "speaker:play"}})
	return c
}

func (e *env) oauthConfig(c *store.Client, scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: c.ID, RedirectURL: webRedirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + pathAuthorize, TokenURL: e.srv.URL + PathToken, AuthStyle: oauth2.AuthStyleInParams}}
}

// follow GETs u with the browser and returns the response.
func (e *env) get(t testing.TB, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	return e.do(t, b, http.MethodGet, strings.TrimPrefix(u, e.srv.URL), "", "")
}

// authorize drives a signed-in browser through authorize and consent (when
// shown) and returns the redirect to the client.
func (e *env) authorize(t testing.TB, b *http.Client, authURL, decision string) *url.URL {
	t.Helper()
	resp, page := e.get(t, b, authURL)
	if resp.StatusCode == http.StatusOK && strings.Contains(page, "/oauth2/authorize/decision") {
		form := url.Values{"decision": {decision}}
		for _, m := range hiddenRE.FindAllStringSubmatch(page, -1) {
			form.Add(m[1], htmlUnescape(m[2])) // resource may repeat (RFC 8707)
		}
		resp, page = e.post(t, b, pathAuthorizeDecision, form)
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d %s", resp.StatusCode, page)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAuthorizationCodeWithRealClients(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	ctx := oidc.ClientContext(e.ctx(), e.srv.Client())
	provider, err := oidc.NewProvider(ctx, e.srv.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	cfg := e.oauthConfig(c, oidc.ScopeOpenID, "offline_access", "speaker:play")
	cfg.Endpoint = provider.Endpoint()
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	verifier := oauth2.GenerateVerifier()
	b := e.browser()

	// Not signed in: sign-in first, with a local return path.
	resp, _ := e.get(t, b, cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-1")))
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin?return_to=%2Foauth2%2Fauthorize") {
		t.Fatalf("want sign-in redirect, got %d %s", resp.StatusCode, loc)
	}
	e.signIn(t, b, "alice", alicePassword)
	back := e.authorize(t, b, cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-1")), "allow")
	q := back.Query()
	if back.Scheme+"://"+back.Host+back.Path != webRedirect || q.Get("state") != "st-1" || q.Get("iss") != e.srv.URL || q.Get("code") == "" {
		t.Fatalf("redirect %s", back)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.RefreshToken == "" {
		t.Error("no refresh token although offline_access was granted")
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: c.ID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var cl struct {
		AZP, Nonce string
		AuthTime   int64 `json:"auth_time"`
	}
	_ = idt.Claims(&cl)
	if idt.Subject != e.alice.ID || idt.Nonce != "n-1" || cl.AuthTime == 0 {
		t.Fatalf("ID token claims %+v %+v", idt, cl)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatalf("at_hash: %v", err)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Subject != e.alice.ID {
		t.Fatalf("userinfo: %v %+v", err, ui)
	}

	// Remembered consent: the next request goes straight back with a code,
	// also with prompt=none; prompt=consent shows the page again.
	back = e.authorize(t, b, cfg.AuthCodeURL("st-2", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")), "allow")
	if back.Query().Get("code") == "" {
		t.Fatalf("prompt=none with consent: %s", back)
	}
	resp, page := e.get(t, b, cfg.AuthCodeURL("st-3", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "consent")))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Acme web app") {
		t.Fatalf("prompt=consent: %d", resp.StatusCode)
	}
	// prompt=login and max_age=0 send the user to sign in again; the fresh
	// sign-in then satisfies them.
	for _, opt := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
		resp, _ = e.get(t, b, cfg.AuthCodeURL("st-4", oauth2.S256ChallengeOption(verifier), opt))
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "/signin?return_to=") {
			t.Fatalf("re-authentication: %d %s", resp.StatusCode, loc)
		}
		e.signIn(t, b, "alice", alicePassword)
		rt, _ := url.QueryUnescape(strings.TrimPrefix(loc, "/signin?return_to="))
		if back := e.authorize(t, b, e.srv.URL+rt, "allow"); back.Query().Get("code") == "" {
			t.Fatalf("after re-authentication: %s", back)
		}
	}
}

func TestAuthorizeDeny(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	back := e.authorize(t, b, e.oauthConfig(c, "speaker:play").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "deny")
	if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "s" || back.Query().Get("code") != "" {
		t.Fatalf("deny: %s", back)
	}
}

// TestAuthorizeRedirectAttacks: anything but an exact registered URI is
// shown on a page, never redirected.
func TestAuthorizeRedirectAttacks(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	ch := oauth2.S256ChallengeOption(oauth2.GenerateVerifier())
	for _, ru := range []string{
		"https://evil.example.com/callback",
		"https://app.example.com/callback/../evil",
		"https://app.example.com/callbackx",
		"https://app.example.com/callback/extra",
		"https://app.example.com/callback?x=1",
		"https://app.example.com:8443/callback",
		"http://app.example.com/callback",
		"https://APP.example.com/callback",
		"https://app.example.com/callback#frag",
		"https://app.example.com.evil.com/callback",
		"http://127.0.0.1:8401/cb",
		"//evil.example.com/callback",
		"https://app.example.com",
	} {
		cfg := e.oauthConfig(c, "speaker:play")
		cfg.RedirectURL = ru
		resp, page := e.get(t, b, cfg.AuthCodeURL("s", ch))
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(page, "redirect_uri") {
			t.Errorf("%s: %d %s", ru, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// Unknown client: a page too, even with a registered-looking URI.
	resp, _ := e.get(t, b, pathAuthorize+"?response_type=code&client_id=nope&redirect_uri="+url.QueryEscape(webRedirect))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("unknown client: %d", resp.StatusCode)
	}
	// Two registered URIs: omitting it is not allowed.
	resp, _ = e.get(t, b, pathAuthorize+"?response_type=code&client_id="+c.ID)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("omitted redirect_uri: %d", resp.StatusCode)
	}
}

// TestAuthorizeRedirectedErrors: after the redirect URI is valid, errors go
// back to the client with state and iss.
func TestAuthorizeRedirectedErrors(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	good := oauth2.GenerateVerifier()
	cases := map[string]struct {
		opts []oauth2.AuthCodeOption
		want string
	}{
		"no PKCE":       {nil, "invalid_request"},
		"plain PKCE":    {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", good), oauth2.SetAuthURLParam("code_challenge_method", "plain")}, "invalid_request"},
		"implicit PKCE": {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", good)}, "invalid_request"},
		"short":         {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", "abc"), oauth2.SetAuthURLParam("code_challenge_method", "S256")}, "invalid_request"},
		"token":         {[]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(good), oauth2.SetAuthURLParam("response_type", "token")}, "unsupported_response_type"},
		"scope":         {[]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(good), oauth2.SetAuthURLParam("scope", "speaker:admin")}, "invalid_scope"},
		"prompt none":   {[]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(good), oauth2.SetAuthURLParam("prompt", "none")}, "login_required"},
	}
	for name, tc := range cases {
		resp, _ := e.get(t, e.browser(), e.oauthConfig(c, "speaker:play").AuthCodeURL("s", tc.opts...))
		u, _ := url.Parse(resp.Header.Get("Location"))
		if !strings.HasPrefix(u.String(), webRedirect+"?") || u.Query().Get("error") != tc.want || u.Query().Get("state") != "s" || u.Query().Get("iss") != e.srv.URL {
			t.Errorf("%s: %d %s", name, resp.StatusCode, u)
		}
	}
	// prompt=none signed in but without consent.
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	back := e.authorize(t, b, e.oauthConfig(c, "speaker:play").AuthCodeURL("s", oauth2.S256ChallengeOption(good), oauth2.SetAuthURLParam("prompt", "none")), "")
	if back.Query().Get("error") != "consent_required" {
		t.Errorf("prompt=none without consent: %s", back)
	}
}

func TestAuthorizeConsentCSRF(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	resp, _ := e.post(t, b, pathAuthorizeDecision, url.Values{"client_id": {c.ID}, "redirect_uri": {webRedirect}, "response_type": {"code"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}, "decision": {"allow"}, "csrf": {"forged"}},
		"Origin", e.srv.URL)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Fatalf("forged consent: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := e.st.GetConsent(context.Background(), e.alice.ID, c.ID); err == nil {
		t.Fatal("forged consent was stored")
	}
}

func TestMetadataAuthorizationCode(t *testing.T) {
	e := newEnv(t)
	m := e.s.Metadata()
	if m.AuthorizationEndpoint != e.srv.URL+pathAuthorize || m.UserinfoEndpoint != e.srv.URL+pathUserinfo ||
		strings.Join(m.ResponseTypesSupported, ",") != "code" || strings.Join(m.CodeChallengeMethodsSupported, ",") != "S256" {
		t.Fatalf("metadata %+v", m)
	}
}

func FuzzAuthorizeRequest(f *testing.F) {
	f.Add("client_id=a&redirect_uri=https%3A%2F%2Fx&response_type=code&code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=S256&prompt=none&max_age=5")
	f.Add("client_id=a&client_id=b&prompt=none+login&max_age=-1")
	f.Add("request=x&response_type=token&code_challenge_method=plain")
	f.Add("client_id=a&response_type=code&dpop_jkt=" + strings.Repeat("A", 43))
	f.Add("client_id=a&response_type=code&dpop_jkt=not+a+thumbprint&dpop_jkt=x")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, pageErr, redirErr := parseAuthorizeRequest(q)
		if pageErr != nil && redirErr != nil {
			t.Fatal("both a page and a redirect error")
		}
		if pageErr == nil && redirErr == nil {
			if req.ClientID == "" || req.ResponseType != "code" || (req.CodeChallenge != "" && (req.CodeChallengeMethod != "S256" || !validPKCEString(req.CodeChallenge))) ||
				(req.DPoPJKT != "" && !validJKT(req.DPoPJKT)) {
				t.Fatalf("accepted %q: %+v", raw, req)
			}
			if req.prompt("none") && len(req.Prompt) > 1 {
				t.Fatalf("accepted prompt %v", req.Prompt)
			}
		}
	})
}

// The consent page says in words what each scope allows (the built-in texts,
// the operator's, and MQTT topic scopes), escaped, with the scope's name.
func TestConsentDescribesScopes(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.ScopeDescriptions = map[string]string{"speaker:play": "Play music on <b>your</b> speakers"}
	})
	c := e.webClient(t)
	cfg := e.oauthConfig(c, oidc.ScopeOpenID, "offline_access", "speaker:play")
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	resp, page := e.get(t, b, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	for _, want := range []string{
		"<li>Sign you in with your account <small>(<code>openid</code>)</small></li>",
		"<li>Keep this access while you are away, until you revoke it <small>(<code>offline_access</code>)</small></li>",
		"<li>Play music on &lt;b&gt;your&lt;/b&gt; speakers <small>(<code>speaker:play</code>)</small></li>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %s:\n%s", want, page)
		}
	}
	for sc, want := range map[string]string{
		"mqtt:pub:home/+/cmd": "Send messages on the topics home/+/cmd",
		"mqtt:sub:home/#":     "Receive messages on the topics home/#",
		"unknown:thing":       "unknown:thing",
	} {
		if got := e.s.scopeText(sc); got != want {
			t.Errorf("scopeText(%q) = %q, want %q", sc, got, want)
		}
	}
}
