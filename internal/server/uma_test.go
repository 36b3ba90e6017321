package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// umaWorld is a running platform with two resource servers (music, trusted;
// photos, not), two requesting clients and three users.
type umaWorld struct {
	r                 *running
	music, photos     clientCreds
	app, app2         clientCreds
	alice, bob, carol *store.User
	iss               *tokens.Issuer
	verifier          *tokens.Verifier
}

type clientCreds struct{ id, secret string }

const umaPW = "correct horse battery staple"

func newUMAWorld(t *testing.T, tweak ...func(*config.Config)) *umaWorld {
	return startUMAWorld(t, nil, tweak...)
}

// startUMAWorld starts the world; more, when not nil, runs before the
// platform serves, with the clients and users made (to write a routes file
// of the gateway that names them, say).
func startUMAWorld(t *testing.T, more func(*umaWorld, *Platform), tweak ...func(*config.Config)) *umaWorld {
	w := &umaWorld{}
	ctx := context.Background()
	w.r = serveWith(t, func(p *Platform) {
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		mk := func(name string, grants []string, scopes []string) clientCreds {
			c, secret, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: name, GrantTypes: grants, Scopes: scopes})
			if err != nil {
				t.Fatal(err)
			}
			return clientCreds{c.ID, secret}
		}
		w.music = mk("music", []string{"client_credentials"}, []string{uma.ScopeProtection})
		w.photos = mk("photos", []string{"client_credentials"}, []string{uma.ScopeProtection})
		w.app = mk("app", []string{uma.GrantType}, nil)
		w.app2 = mk("app2", []string{uma.GrantType}, nil)
		p.Config.UMA.TrustedResourceServers = []string{w.music.id}
		for _, u := range []**store.User{&w.alice, &w.bob, &w.carol} {
			name := map[**store.User]string{&w.alice: "alice", &w.bob: "bob", &w.carol: "carol"}[u]
			if *u, err = p.Identity.CreateUser(ctx, "test", &store.User{UserName: name}, umaPW); err != nil {
				t.Fatal(err)
			}
		}
		if more != nil {
			more(w, p)
		}
	}, tweak...)
	keys, err := tokens.NewKeys(ctx, w.r.p.Store, tokens.KeysConfig{MasterKey: w.r.p.Key, Alg: tokens.ES256, MaxTokenLifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	if w.iss, err = tokens.NewIssuer(keys, w.r.p.Config.HTTP.PublicURL); err != nil {
		t.Fatal(err)
	}
	// A verifier like the gateway's, following revocations on the bus.
	if w.verifier, err = tokens.NewVerifier(keys, tokens.VerifierConfig{Issuer: w.r.p.Config.HTTP.PublicURL, Bus: w.r.p.Bus}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.verifier.Close)
	return w
}

// pat gets a PAT for a resource server with golang.org/x/oauth2.
func (w *umaWorld) pat(t *testing.T, c clientCreds) string {
	cc := clientcredentials.Config{ClientID: c.id, ClientSecret: c.secret, TokenURL: w.r.base + "/oauth2/token", Scopes: []string{uma.ScopeProtection}}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, w.r.client))
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// userToken is an access token of client acting for user under a real grant:
// the claim token a paired device would present.
func (w *umaWorld) userToken(t *testing.T, client string, user *store.User, mutate func(*tokens.Claims)) string {
	g := &store.Grant{ClientID: client, UserID: user.ID, Scopes: []string{"profile"}, Created: time.Now()}
	if err := w.r.p.Store.CreateGrant(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := tokens.Claims{Subject: user.ID, ClientID: client, Audience: []string{w.r.p.Config.HTTP.PublicURL}, Scope: []string{"profile"},
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), GrantID: g.ID}
	if mutate != nil {
		mutate(&c)
	}
	tok, err := w.iss.AccessToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call makes a raw HTTP request, as a client written from the
// recommendations would, and decodes the JSON answer.
func (w *umaWorld) call(t *testing.T, c *http.Client, method, path string, hdr map[string]string, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, w.r.base+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = w.r.client
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	} else {
		out = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, out
}

func jsonHdr(tok string) map[string]string {
	h := map[string]string{"Content-Type": "application/json"}
	if tok != "" {
		h["Authorization"] = "Bearer " + tok
	}
	return h
}

// token asks the token endpoint for an RPT as client c.
func (w *umaWorld) token(t *testing.T, c clientCreds, params url.Values) (int, map[string]any) {
	t.Helper()
	params.Set("grant_type", uma.GrantType)
	return w.call(t, nil, "POST", "/oauth2/token", map[string]string{
		"Content-Type":  "application/x-www-form-urlencoded",
		"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.id)+":"+url.QueryEscape(c.secret))),
	}, params.Encode())
}

func (w *umaWorld) register(t *testing.T, pat, body string) (int, map[string]any) {
	return w.call(t, nil, "POST", "/uma/resource_set", jsonHdr(pat), body)
}

func (w *umaWorld) ticket(t *testing.T, pat, body string) string {
	t.Helper()
	code, out := w.call(t, nil, "POST", "/uma/permission", jsonHdr(pat), body)
	if code != 201 || out["ticket"] == "" {
		t.Fatalf("permission: %d %v", code, out)
	}
	return out["ticket"].(string)
}

func (w *umaWorld) introspect(t *testing.T, pat, rpt string) map[string]any {
	t.Helper()
	code, out := w.call(t, nil, "POST", "/uma/introspect", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer " + pat},
		url.Values{"token": {rpt}}.Encode())
	if code != 200 {
		t.Fatalf("introspect: %d %v", code, out)
	}
	return out
}

func (w *umaWorld) signin(t *testing.T, name string) *http.Client {
	t.Helper()
	c := w.r.browser()
	if code, body := w.r.postWith(t, c, "/api/v1/signin", `{"userName":`+jsonQuote(name)+`,"password":`+jsonQuote(umaPW)+`}`); code != 200 {
		t.Fatalf("sign in %s: %d %s", name, code, body)
	}
	return c
}

// TestUMAFlowEndToEnd drives the whole UMA flow over HTTP: discovery, a
// resource server registering a resource with a client_credentials PAT,
// a ticket, need_info, request_submitted, the owner approving, the RPT,
// introspection, and revocation reaching introspection and the verifier.
func TestUMAFlowEndToEnd(t *testing.T) {
	w := newUMAWorld(t)
	pub := w.r.p.Config.HTTP.PublicURL
	code, conf := w.call(t, nil, "GET", uma.PathConfiguration, nil, "")
	if code != 200 || !slices.Contains(conf["grant_types_supported"].([]any), any(uma.GrantType)) ||
		conf["permission_endpoint"] != pub+"/uma/permission" || conf["resource_registration_endpoint"] != pub+"/uma/resource_set" ||
		conf["introspection_endpoint"] != pub+"/uma/introspect" || conf["token_endpoint"] != pub+"/oauth2/token" || conf["issuer"] != pub {
		t.Fatalf("uma2-configuration: %d %v", code, conf)
	}
	code, meta := w.call(t, nil, "GET", "/.well-known/oauth-authorization-server", nil, "")
	if code != 200 || !slices.Contains(meta["grant_types_supported"].([]any), any(uma.GrantType)) {
		t.Fatalf("oauth metadata lacks the UMA grant: %v", meta["grant_types_supported"])
	}

	music := w.pat(t, w.music)
	code, out := w.register(t, music, `{"name":"Road trip","type":"https://music.example/playlist","resource_scopes":["read","play","edit"],"owner":"alice"}`)
	if code != 201 || out["_id"] == nil || !strings.Contains(out["user_access_policy_uri"].(string), "/account/sharing") {
		t.Fatalf("register: %d %v", code, out)
	}
	playlist := out["_id"].(string)
	if code, out := w.call(t, nil, "GET", "/uma/resource_set/"+playlist, jsonHdr(music), ""); code != 200 || out["name"] != "Road trip" || out["_id"] != playlist {
		t.Fatalf("read: %d %v", code, out)
	}

	// The client has no RPT: the resource server gets a ticket for it.
	ticket := w.ticket(t, music, `[{"resource_id":`+jsonQuote(playlist)+`,"resource_scopes":["play"]}]`)
	code, out = w.token(t, w.app, url.Values{"ticket": {ticket}})
	// app registered no redirect URI: it cannot send a party to the
	// claims-interaction endpoint, so no redirect_user hint.
	if code != 403 || out["error"] != "need_info" || out["ticket"] == nil || out["required_claims"] == nil || out["redirect_user"] != nil {
		t.Fatalf("without claims: %d %v", code, out)
	}
	ticket = out["ticket"].(string)
	// Bob's device pushes its own access token acting for bob.
	bobToken := w.userToken(t, w.app.id, w.bob, nil)
	code, out = w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {bobToken}, "claim_token_format": {uma.FormatAccessToken}})
	if code != 403 || out["error"] != "request_submitted" || out["ticket"] == nil {
		t.Fatalf("before the owner decided: %d %v", code, out)
	}
	ticket = out["ticket"].(string)

	alice, bob := w.signin(t, "alice"), w.signin(t, "bob")
	code, reqs := w.call(t, alice, "GET", "/api/v1/uma/requests", nil, "")
	list := reqs["requests"].([]any)
	if code != 200 || len(list) != 1 {
		t.Fatalf("pending requests: %d %v", code, reqs)
	}
	reqID := list[0].(map[string]any)["id"].(string)
	// The requesting party cannot approve their own request.
	if code, out := w.call(t, bob, "POST", "/api/v1/uma/requests/"+reqID+"/approve", nil, ""); code != 404 && code != 403 {
		t.Fatalf("bob approved his own request: %d %v", code, out)
	}
	if code, out := w.call(t, alice, "POST", "/api/v1/uma/requests/"+reqID+"/approve", nil, ""); code != 200 {
		t.Fatalf("approve: %d %v", code, out)
	}
	if code, out := w.call(t, bob, "GET", "/api/v1/uma/shared-with-me", nil, ""); code != 200 || len(out["shared"].([]any)) != 1 {
		t.Fatalf("shared with bob: %d %v", code, out)
	}
	// thingid's own sharing API names its fields in camelCase like every
	// /api/v1 API; the UMA protocol endpoints keep the specification's names.
	for _, c := range []struct {
		who        *http.Client
		path, want string
	}{
		{alice, "/api/v1/uma/resources", `"resourceScopes"`},
		{alice, "/api/v1/uma/shares", `"granteeName"`},
		{alice, "/api/v1/uma/requests?status=approved", `"requesterName"`},
		{bob, "/api/v1/uma/shared-with-me", `"resourceId"`},
	} {
		code, out := w.call(t, c.who, "GET", c.path, nil, "")
		if k := snakeKey(out); code != 200 || k != "" || !strings.Contains(toJSON(out), c.want) {
			t.Errorf("GET %s: %d, snake_case key %q, want %s in %v", c.path, code, k, c.want, out)
		}
	}

	// A ticket reissued to app is app's alone, and another client's try
	// does not use it up.
	if code, out := w.token(t, w.app2, url.Values{"ticket": {ticket}, "claim_token": {w.userToken(t, w.app2.id, w.bob, nil)}, "claim_token_format": {uma.FormatAccessToken}}); code != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("ticket of another client: %d %v", code, out)
	}
	code, out = w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {bobToken}, "claim_token_format": {uma.FormatAccessToken}})
	if code != 200 || out["access_token"] == nil || out["token_type"] != "Bearer" || out["pct"] == nil {
		t.Fatalf("RPT: %d %v", code, out)
	}
	rpt, pct := out["access_token"].(string), out["pct"].(string)
	// Used twice.
	if code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "pct": {pct}}); code != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("ticket used twice: %d %v", code, out)
	}
	in := w.introspect(t, music, rpt)
	perms, _ := in["permissions"].([]any)
	if in["active"] != true || len(perms) != 1 {
		t.Fatalf("introspection: %v", in)
	}
	p0 := perms[0].(map[string]any)
	if p0["resource_id"] != playlist || p0["exp"] == nil || !slices.Equal(anyStrings(p0["resource_scopes"]), []string{"play"}) {
		t.Fatalf("permission: %v (want play only: edit was never granted)", p0)
	}
	// Another resource server with a client_credentials PAT is not trusted
	// and learns nothing (with an owner's PAT: TestUMAAttacks).
	if code, out := w.call(t, nil, "POST", "/uma/introspect", map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"Authorization": "Bearer " + w.pat(t, w.photos)}, url.Values{"token": {rpt}}.Encode()); code != 403 {
		t.Fatalf("photos introspected: %d %v", code, out)
	}
	if _, err := w.verifier.Verify(context.Background(), tokens.FromConnection(rpt, nil), tokens.VerifyOptions{Audience: w.r.p.Config.HTTP.PublicURL}); err != nil {
		t.Fatalf("verifier before revocation: %v", err)
	}

	// The owner revokes: introspection and the verifier refuse at once.
	code, shares := w.call(t, alice, "GET", "/api/v1/uma/shares", nil, "")
	sl := shares["shares"].([]any)
	if code != 200 || len(sl) != 1 {
		t.Fatalf("shares: %d %v", code, shares)
	}
	if code, out := w.call(t, alice, "DELETE", "/api/v1/uma/shares/"+sl[0].(map[string]any)["id"].(string), nil, ""); code != 204 {
		t.Fatalf("revoke: %d %v", code, out)
	}
	if in := w.introspect(t, music, rpt); in["active"] != false {
		t.Fatalf("introspection after revocation: %v", in)
	}
	if _, err := w.verifier.Verify(context.Background(), tokens.FromConnection(rpt, nil), tokens.VerifyOptions{Audience: w.r.p.Config.HTTP.PublicURL}); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("verifier after revocation: %v, want ErrRevoked", err)
	}
	// The audit log has the story.
	recs, err := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, rec := range recs {
		if strings.HasPrefix(rec.Action, "uma.") {
			actions = append(actions, rec.Action)
		}
	}
	for _, a := range []string{"uma.resource.create", "uma.request.create", "uma.share.create", "uma.request.approved", "uma.rpt.issue", "uma.share.revoke"} {
		if !slices.Contains(actions, a) {
			t.Errorf("audit lacks %s: %v", a, actions)
		}
	}
}

func anyStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestUMAAttacks tries to break the rules of the protection API, the
// tickets, the claim tokens and the owners' API.
func TestUMAAttacks(t *testing.T) {
	w := newUMAWorld(t)
	ctx := context.Background()
	music := w.pat(t, w.music)
	_, out := w.register(t, music, `{"name":"A","resource_scopes":["read","write"],"owner":"alice"}`)
	resA := out["_id"].(string)

	t.Run("untrusted resource server registers for an owner who never consented", func(t *testing.T) {
		photos := w.pat(t, w.photos)
		if code, out := w.register(t, photos, `{"name":"B","resource_scopes":["read"],"owner":"alice"}`); code != 403 {
			t.Fatalf("%d %v", code, out)
		}
		if code, out := w.call(t, nil, "POST", "/uma/permission", jsonHdr(photos), `{"resource_id":`+jsonQuote(resA)+`,"resource_scopes":["read"]}`); code != 403 {
			t.Fatalf("permission with an untrusted client_credentials PAT: %d %v", code, out)
		}
	})
	t.Run("owner's PAT registers for that owner only", func(t *testing.T) {
		// A PAT of photos acting for carol (as the authorization code flow gives).
		carolPAT := w.userToken(t, w.photos.id, w.carol, func(c *tokens.Claims) { c.Scope = []string{uma.ScopeProtection} })
		if code, out := w.register(t, carolPAT, `{"name":"B","resource_scopes":["read"],"owner":"alice"}`); code != 403 {
			t.Fatalf("registered for alice with carol's PAT: %d %v", code, out)
		}
		code, out := w.register(t, carolPAT, `{"name":"B","resource_scopes":["read"]}`)
		if code != 201 {
			t.Fatalf("carol's own: %d %v", code, out)
		}
		resB := out["_id"].(string)
		// Resource server photos (B) asks a ticket for music's (A) resource.
		if code, out := w.call(t, nil, "POST", "/uma/permission", jsonHdr(carolPAT), `{"resource_id":`+jsonQuote(resA)+`,"resource_scopes":["read"]}`); code != 400 || out["error"] != "invalid_resource_id" {
			t.Fatalf("ticket for another resource server's resource: %d %v", code, out)
		}
		// And music cannot read photos' resource.
		if code, _ := w.call(t, nil, "GET", "/uma/resource_set/"+resB, jsonHdr(music), ""); code != 404 {
			t.Fatalf("music read photos' resource: %d", code)
		}
		// An RPT for A is inactive to B.
		ticket := w.ticket(t, music, `{"resource_id":`+jsonQuote(resA)+`,"resource_scopes":["read"]}`)
		code, out = w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {w.userToken(t, w.app.id, w.alice, nil)}, "claim_token_format": {uma.FormatAccessToken}})
		if code != 200 {
			t.Fatalf("owner's own RPT: %d %v", code, out)
		}
		rpt := out["access_token"].(string)
		if in := w.introspect(t, carolPAT, rpt); in["active"] != false {
			t.Fatalf("RPT for A active at B: %v", in)
		}
		if in := w.introspect(t, music, rpt); in["active"] != true {
			t.Fatalf("RPT for A at A: %v", in)
		}
	})
	t.Run("expired ticket", func(t *testing.T) {
		v := "umt_AAAAAAAAAAAAAAAAAAAAAAAAAA"
		key := hmacSum(w.r.p.derivedKey("thingid uma v1"), "thingid uma ticket v1")
		if err := w.r.p.Store.CreateUMATicket(ctx, &store.UMATicket{Hash: hmacSum(key, v), ClientID: w.music.id,
			Permissions: []store.UMAPermission{{ResourceID: resA, Scopes: []string{"read"}}}, ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		// UMA 2.0 Grant §3.3.6: an expired ticket is invalid_grant (UMA 1.0's
		// expired_ticket is not an error of the recommendation).
		if code, out := w.token(t, w.app, url.Values{"ticket": {v}}); code != 400 || out["error"] != "invalid_grant" || !strings.Contains(out["error_description"].(string), "expired") {
			t.Fatalf("%d %v", code, out)
		}
	})
	t.Run("claim tokens", func(t *testing.T) {
		foreignIss, _ := tokens.NewIssuer(w.iss2Keys(t), "https://evil.example")
		g := &store.Grant{ClientID: w.app.id, UserID: w.bob.ID, Created: time.Now()}
		_ = w.r.p.Store.CreateGrant(ctx, g)
		foreign, _ := foreignIss.AccessToken(tokens.Claims{Subject: w.bob.ID, ClientID: w.app.id, Audience: []string{w.r.base}, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute), GrantID: g.ID})
		expired := w.userToken(t, w.app.id, w.bob, func(c *tokens.Claims) {
			c.IssuedAt, c.ExpiresAt = time.Now().Add(-15*time.Minute), time.Now().Add(-10*time.Minute)
		})
		good := w.userToken(t, w.app.id, w.bob, nil)
		parts := strings.Split(good, ".")
		none := b64url(`{"alg":"none","typ":"at+jwt"}`) + "." + parts[1] + "."
		hs := hs256WithPublicKey(t, w, parts[1])
		for name, tok := range map[string]string{
			"another issuer": foreign, "expired": expired, "alg none": none, "HS256 with the public key": hs,
			"another client's token": w.userToken(t, w.app2.id, w.bob, nil),
		} {
			ticket := w.ticket(t, music, `{"resource_id":`+jsonQuote(resA)+`,"resource_scopes":["read"]}`)
			code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {tok}, "claim_token_format": {uma.FormatAccessToken}})
			if code != 400 || out["error"] != "invalid_grant" {
				t.Errorf("%s: %d %v", name, code, out)
			}
		}
		ticket := w.ticket(t, music, `{"resource_id":`+jsonQuote(resA)+`,"resource_scopes":["read"]}`)
		if code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {good}, "claim_token_format": {uma.FormatIDToken}}); code != 400 || out["error"] != "invalid_grant" {
			t.Errorf("access token as an ID token: %d %v", code, out)
		}
	})
	t.Run("owner shares what is not theirs", func(t *testing.T) {
		bob := w.signin(t, "bob")
		code, out := w.call(t, bob, "POST", "/api/v1/uma/shares", jsonHdr(""), `{"resourceId":`+jsonQuote(resA)+`,"user":"carol","scopes":["read"]}`)
		if code != 404 || out["field"] != "resourceId" {
			t.Fatalf("%d %v", code, out)
		}
		alice := w.signin(t, "alice")
		if code, out := w.call(t, alice, "POST", "/api/v1/uma/shares", jsonHdr(""), `{"resourceId":`+jsonQuote(resA)+`,"user":"carol","scopes":["fly"]}`); code != 400 {
			t.Fatalf("unknown scope: %d %v", code, out)
		}
		if code, out := w.call(t, alice, "POST", "/api/v1/uma/shares", jsonHdr(""), `{"resourceId":`+jsonQuote(resA)+`,"user":"carol","scopes":["read"],"expiresAt":"2001-01-01T00:00:00Z"}`); code != 400 || out["field"] != "expiresAt" {
			t.Fatalf("past end date: %d %v", code, out)
		}
		// The names before the API became camelCase are not read: the
		// error names the field as it is called now.
		if code, out := w.call(t, alice, "POST", "/api/v1/uma/shares", jsonHdr(""), `{"resource_id":`+jsonQuote(resA)+`,"user":"carol","scopes":["read"]}`); code != 400 || out["field"] != "resourceId" {
			t.Fatalf("snake_case resource_id: %d %v", code, out)
		}
	})
	t.Run("bad registration bodies", func(t *testing.T) {
		deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
		for _, tc := range []struct{ body, field string }{
			{`{"name":"` + strings.Repeat("x", 300) + `","resource_scopes":["a"]}`, "name"},
			{`{"name":{"x":1},"resource_scopes":["a"]}`, "name"},
			{`{"name":"n","resource_scopes":["a b"]}`, "resource_scopes[0]"},
			{`{"name":"n","resource_scopes":["a","a"]}`, "resource_scopes[1]"},
			{`{"name":"n"}`, "resource_scopes"},
			{`{"name":"n","resource_scopes":"a"}`, "resource_scopes"},
			{`{"name":"n","resource_scopes":["` + strings.Repeat("s", 300) + `"]}`, "resource_scopes[0]"},
			{`{"name":"n","resource_scopes":["a"],"icon_uri":"javascript:alert(1)"}`, "icon_uri"},
			{`{"name":"n","resource_scopes":["a"],"x":` + deep + `}`, "body"},
			{`{"name":"` + strings.Repeat("x", 70<<10) + `"}`, "body"},
			{`not json`, "body"},
			{`{"name":"n","resource_scopes":["a"]} {}`, "body"},
		} {
			code, out := w.register(t, music, tc.body)
			desc, _ := out["error_description"].(string)
			if code != 400 || out["error"] != "invalid_request" || !strings.HasPrefix(desc, tc.field+":") {
				t.Errorf("body %.60q: %d %v, want 400 naming %s", tc.body, code, out, tc.field)
			}
		}
	})
}

// snakeKey returns a key of the JSON value v that has an underscore, "" if
// none has.
func snakeKey(v any) string {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if strings.Contains(k, "_") {
				return k
			}
			if k := snakeKey(x); k != "" {
				return k
			}
		}
	case []any:
		for _, x := range v {
			if k := snakeKey(x); k != "" {
				return k
			}
		}
	}
	return ""
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func hmacSum(key []byte, v string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return m.Sum(nil)
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// iss2Keys is a second, unrelated key set (another issuer's).
func (w *umaWorld) iss2Keys(t *testing.T) *tokens.Keys {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k, err := tokens.NewKeys(context.Background(), st, tokens.KeysConfig{MasterKey: secrets.Key{7}, Alg: tokens.ES256, MaxTokenLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// hs256WithPublicKey signs payload with HMAC-SHA256 keyed by the platform's
// public JWK (the algorithm confusion attack).
func hs256WithPublicKey(t *testing.T, w *umaWorld, payload string) string {
	code, jwks := w.call(t, nil, "GET", "/oauth2/jwks", nil, "")
	if code != 200 {
		t.Fatal(code)
	}
	key := jwks["keys"].([]any)[0].(map[string]any)
	pub, _ := json.Marshal(key)
	head := b64url(`{"alg":"HS256","typ":"at+jwt","kid":` + jsonQuote(key["kid"].(string)) + `}`)
	m := hmac.New(sha256.New, pub)
	m.Write([]byte(head + "." + payload))
	return head + "." + payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestTokenAndSignInMetricsServed: the token endpoint counts the UMA grant
// through the extension hook like its own grants, and sign-in failures are
// counted; /metrics serves them.
func TestTokenAndSignInMetricsServed(t *testing.T) {
	w := newUMAWorld(t)
	music := w.pat(t, w.music) // golang.org/x/oauth2, client_credentials
	code, out := w.register(t, music, `{"name":"Road trip","resource_scopes":["play"],"owner":"alice"}`)
	if code != 201 {
		t.Fatalf("register: %d %v", code, out)
	}
	ticket := w.ticket(t, music, `[{"resource_id":`+jsonQuote(out["_id"].(string))+`,"resource_scopes":["play"]}]`)
	if code, out := w.token(t, w.app, url.Values{"ticket": {ticket}}); out["error"] != "need_info" {
		t.Fatalf("without claims: %d %v", code, out)
	}
	if code, out := w.token(t, w.app, url.Values{"ticket": {"made-up"}}); out["error"] != "invalid_grant" {
		t.Fatalf("made-up ticket: %d %v", code, out)
	}
	if code, body := w.r.postWith(t, w.r.browser(), "/api/v1/signin", `{"userName":"alice","password":"not hers"}`); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s", code, body)
	}
	w.r.wantMetrics(t,
		`thingid_oauth_tokens_total{grant="client_credentials",result="issued"} 1`,
		`thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:uma-ticket",result="need_info"} 1`,
		`thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:uma-ticket",result="invalid_grant"} 1`,
		`thingid_signin_total{result="bad_credentials"} 1`,
		`thingid_consent_decisions_total{decision="allow",flow="device"} 0`)
}
