package server

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/uma"
)

// The claims-interaction endpoint (UMA 2.0 Grant §3.3.2, §3.3.3), driven
// over HTTP with a cookie jar as the requesting party's browser.

// claimsWorld is a UMA world with a web client registered for the UMA grant
// with two redirect URIs, a second one with the first of them, and alice's
// playlist on the music resource server.
type claimsWorld struct {
	*umaWorld
	web, web2      clientCreds
	cb, cb2        string
	music          string // music's PAT
	playlist       string
	claimsEndpoint string
}

func newClaimsWorld(t *testing.T) *claimsWorld { return newClaimsWorldWith(t) }

// newClaimsWorldWith is newClaimsWorld on a configuration changed by tweak.
func newClaimsWorldWith(t *testing.T, tweak ...func(*config.Config)) *claimsWorld {
	w := &claimsWorld{umaWorld: newUMAWorld(t, tweak...), cb: "http://127.0.0.1:9/uma/back?app=1", cb2: "https://frame.example/uma/back"}
	w.web = w.webClient(t, "Photo frame", w.cb, w.cb2)
	w.web2 = w.webClient(t, "Other app", w.cb)
	w.music = w.pat(t, w.umaWorld.music)
	code, out := w.register(t, w.music, `{"name":"Road trip","resource_scopes":["read","play"],"owner":"alice"}`)
	if code != 201 {
		t.Fatalf("register: %d %v", code, out)
	}
	w.playlist = out["_id"].(string)
	w.claimsEndpoint = w.r.base + "/uma/claims"
	return w
}

// webClient registers a client of the UMA grant with redirect URIs over the admin API.
func (w *umaWorld) webClient(t *testing.T, name string, redirects ...string) clientCreds {
	id, secret := createClient(t, w.r, map[string]any{"client_name": name, "grant_types": []string{uma.GrantType}, "redirect_uris": redirects})
	return clientCreds{id, secret}
}

// needInfoTicket is a ticket for the playlist that the token endpoint
// handed back to c with need_info.
func (w *claimsWorld) needInfoTicket(t *testing.T, c clientCreds) string {
	t.Helper()
	code, out := w.token(t, c, url.Values{"ticket": {w.ticket(t, w.music, `{"resource_id":`+jsonQuote(w.playlist)+`,"resource_scopes":["play"]}`)}})
	if code != 403 || out["error"] != "need_info" || out["redirect_user"] != true {
		t.Fatalf("need_info with redirect_user: %d %v", code, out)
	}
	return out["ticket"].(string)
}

// noFollow is c (sharing its cookies) without following redirects.
func noFollow(c *http.Client) *http.Client {
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &n
}

// browse sends method target (a path of the platform or a URL) with form,
// as a browser would, and returns the answer with its body.
func (w *claimsWorld) browse(t *testing.T, c *http.Client, method, target string, form url.Values, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		target = w.r.base + target
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", w.r.base)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// formOf returns the hidden fields of a page.
func formOf(page string) url.Values {
	f := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		f.Add(m[1], html.UnescapeString(m[2]))
	}
	return f
}

// claimsURL is the claims-interaction request a client redirects to.
func (w *claimsWorld) claimsURL(p map[string]string) string {
	q := url.Values{}
	for k, v := range p {
		q.Set(k, v)
	}
	return w.claimsEndpoint + "?" + q.Encode()
}

// decide opens the confirmation page of target in c and presses decision;
// it returns the redirect back to the client.
func (w *claimsWorld) decide(t *testing.T, c *http.Client, target, decision string) *url.URL {
	t.Helper()
	resp, page := w.browse(t, c, "GET", target, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `id="allow"`) {
		t.Fatalf("confirmation page: %d %s", resp.StatusCode, page)
	}
	f := formOf(page)
	f.Set("decision", decision)
	resp, page = w.browse(t, c, "POST", "/uma/claims", f, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("decision: %d %s", resp.StatusCode, page)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// TestUMAClaimsInteraction: need_info offers redirect_user; the party's
// browser signs in through the platform's sign-in page, comes back to the
// confirmation page, continues, and returns to the client with a new ticket
// and the state; the client's token request with that ticket alone acts
// for the party (request_submitted, then, after the owner approved, an RPT
// of the party and a pct).
func TestUMAClaimsInteraction(t *testing.T) {
	w := newClaimsWorld(t)
	pub := w.r.p.Config.HTTP.PublicURL
	if code, conf := w.call(t, nil, "GET", uma.PathConfiguration, nil, ""); code != 200 || conf["claims_interaction_endpoint"] != pub+"/uma/claims" {
		t.Fatalf("uma2-configuration: %d %v", code, conf["claims_interaction_endpoint"])
	}
	ticket := w.needInfoTicket(t, w.web)

	bob := noFollow(w.r.browser())
	target := w.claimsURL(map[string]string{"client_id": w.web.id, "ticket": ticket, "claims_redirect_uri": w.cb, "state": "st-42"})
	resp, _ := w.browse(t, bob, "GET", target, nil, nil)
	signin := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(signin, "/signin?return_to=%2Fuma%2Fclaims%3F") {
		t.Fatalf("not sent to sign in: %d %q", resp.StatusCode, signin)
	}
	_, page := w.browse(t, bob, "GET", signin, nil, nil)
	f := formOf(page)
	f.Set("userName", "bob")
	f.Set("password", umaPW)
	resp, page = w.browse(t, bob, "POST", "/signin", f, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/uma/claims?") {
		t.Fatalf("sign-in did not come back: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	resp, page = w.browse(t, bob, "GET", resp.Header.Get("Location"), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("confirmation page: %d %s", resp.StatusCode, page)
	}
	for _, want := range []string{"Photo frame", "Road trip", "alice", "bob", "play", "127.0.0.1:9"} {
		if !strings.Contains(page, want) {
			t.Errorf("confirmation page lacks %q:\n%s", want, page)
		}
	}
	back := w.decide(t, bob, resp.Request.URL.String(), "allow")
	q := back.Query()
	if got := back.Scheme + "://" + back.Host + back.Path; got != "http://127.0.0.1:9/uma/back" || q.Get("app") != "1" || q.Get("state") != "st-42" || !uma.ValidTicket(q.Get("ticket")) || q.Get("ticket") == ticket {
		t.Fatalf("back at the client: %s (want the registered URI with its query, the state and a new ticket)", back)
	}

	// The client's token request: the ticket alone names bob.
	code, out := w.token(t, w.web, url.Values{"ticket": {q.Get("ticket")}})
	if code != 403 || out["error"] != "request_submitted" {
		t.Fatalf("with the bound ticket: %d %v", code, out)
	}
	rotated := out["ticket"].(string)
	alice := w.signin(t, "alice")
	_, reqs := w.call(t, alice, "GET", "/api/v1/uma/requests?status=pending", nil, "")
	list, _ := reqs["requests"].([]any)
	if len(list) != 1 || !strings.Contains(toJSON(list[0]), w.bob.ID) {
		t.Fatalf("alice's pending requests: %v", reqs)
	}
	if code, out := w.call(t, alice, "POST", "/api/v1/uma/requests/"+list[0].(map[string]any)["id"].(string)+"/approve", nil, ""); code != 200 {
		t.Fatalf("approve: %d %v", code, out)
	}
	code, out = w.token(t, w.web, url.Values{"ticket": {rotated}})
	if code != 200 || out["pct"] == nil {
		t.Fatalf("RPT with the rotated ticket: %d %v", code, out)
	}
	if in := w.introspect(t, w.music, out["access_token"].(string)); in["active"] != true || in["sub"] != w.bob.ID || in["client_id"] != w.web.id {
		t.Fatalf("the RPT is not bob's at web: %v", in)
	}
	// The pct persists bob's identity for web.
	fresh := w.ticket(t, w.music, `{"resource_id":`+jsonQuote(w.playlist)+`,"resource_scopes":["play"]}`)
	if code, out := w.token(t, w.web, url.Values{"ticket": {fresh}, "pct": {out["pct"].(string)}}); code != 200 {
		t.Fatalf("with the pct: %d %v", code, out)
	}
	recs, err := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range recs {
		found = found || (rec.Action == "uma.claims.submitted" && rec.Actor == "user:"+w.bob.ID)
	}
	if !found {
		t.Error("the audit log lacks uma.claims.submitted by bob")
	}
}

// TestUMAClaimsInteractionAttacks tries to break the claims-interaction
// endpoint: open redirects, other clients' and dead tickets, a bound
// identity taken to another client, and CSRF into the binding.
func TestUMAClaimsInteractionAttacks(t *testing.T) {
	w := newClaimsWorld(t)
	bob := noFollow(w.signin(t, "bob"))

	t.Run("never redirected: bad client or claims_redirect_uri", func(t *testing.T) {
		ticket := w.needInfoTicket(t, w.web)
		for _, tc := range []struct {
			name   string
			params map[string]string
			field  string
		}{
			{"another site", map[string]string{"claims_redirect_uri": "https://evil.example/uma/back"}, "claims_redirect_uri"},
			{"a longer path", map[string]string{"claims_redirect_uri": "http://127.0.0.1:9/uma/back/../x"}, "claims_redirect_uri"},
			{"another query", map[string]string{"claims_redirect_uri": "http://127.0.0.1:9/uma/back?app=2"}, "claims_redirect_uri"},
			{"the query dropped", map[string]string{"claims_redirect_uri": "http://127.0.0.1:9/uma/back"}, "claims_redirect_uri"},
			{"upper-case scheme", map[string]string{"claims_redirect_uri": "HTTP://127.0.0.1:9/uma/back?app=1"}, "claims_redirect_uri"},
			{"a fragment", map[string]string{"claims_redirect_uri": w.cb + "#x"}, "claims_redirect_uri"},
			{"network path", map[string]string{"claims_redirect_uri": "//evil.example/"}, "claims_redirect_uri"},
			{"another client's URI", map[string]string{"client_id": w.web2.id, "claims_redirect_uri": w.cb2}, "claims_redirect_uri"},
			{"omitted with two registered", map[string]string{"claims_redirect_uri": ""}, "claims_redirect_uri"},
			{"unknown client", map[string]string{"client_id": "nobody"}, "client_id"},
			{"no client", map[string]string{"client_id": ""}, "client_id"},
			{"a client without the UMA grant", map[string]string{"client_id": w.umaWorld.music.id}, "client_id"},
		} {
			p := map[string]string{"client_id": w.web.id, "ticket": ticket, "claims_redirect_uri": w.cb, "state": "s"}
			for k, v := range tc.params {
				p[k] = v
			}
			resp, page := w.browse(t, bob, "GET", w.claimsURL(p), nil, nil)
			if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(page, tc.field) {
				t.Errorf("%s: %d Location %q, want a 400 page naming %s:\n%s", tc.name, resp.StatusCode, resp.Header.Get("Location"), tc.field, page)
			}
		}
		// A parameter twice is refused on the page, naming it.
		resp, page := w.browse(t, bob, "GET", w.claimsEndpoint+"?client_id="+url.QueryEscape(w.web.id)+"&ticket="+ticket+"&ticket="+ticket+"&claims_redirect_uri="+url.QueryEscape(w.cb), nil, nil)
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(page, "ticket: appears more than once") {
			t.Errorf("ticket twice: %d %s", resp.StatusCode, page)
		}
		// With one registered URI the parameter may be omitted.
		resp, _ = w.browse(t, bob, "GET", w.claimsURL(map[string]string{"client_id": w.web2.id, "ticket": w.needInfoTicket(t, w.web2)}), nil, nil)
		if resp.StatusCode != 200 {
			t.Errorf("claims_redirect_uri omitted with one registered: %d", resp.StatusCode)
		}
	})

	t.Run("dead or foreign tickets go back as invalid_grant", func(t *testing.T) {
		used := w.needInfoTicket(t, w.web)
		if code, _ := w.token(t, w.web, url.Values{"ticket": {used}}); code != 403 {
			t.Fatalf("using the ticket: %d", code)
		}
		expired := "umt_BBBBBBBBBBBBBBBBBBBBBBBBBB"
		key := hmacSum(w.r.p.derivedKey("thingid uma v1"), "thingid uma ticket v1")
		if err := w.r.p.Store.CreateUMATicket(context.Background(), &store.UMATicket{Hash: hmacSum(key, expired), ClientID: w.umaWorld.music.id, Requester: w.web.id,
			Permissions: []store.UMAPermission{{ResourceID: w.playlist, Scopes: []string{"play"}}}, ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
		for name, tc := range map[string]struct{ ticket, code, desc string }{
			"another client's":   {w.needInfoTicket(t, w.web2), "invalid_grant", "another client"},
			"used":               {used, "invalid_grant", "used"},
			"expired":            {expired, "invalid_grant", "expired"},
			"unknown":            {"umt_CCCCCCCCCCCCCCCCCCCCCCCCCC", "invalid_grant", "unknown"},
			"not a ticket":       {"<script>", "invalid_grant", "not one of"},
			"missing the ticket": {"", "invalid_request", "ticket is required"},
		} {
			p := map[string]string{"client_id": w.web.id, "claims_redirect_uri": w.cb, "state": "s-1"}
			if tc.ticket != "" {
				p["ticket"] = tc.ticket
			}
			resp, _ := w.browse(t, bob, "GET", w.claimsURL(p), nil, nil)
			back, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(back.String(), "http://127.0.0.1:9/uma/back?") ||
				back.Query().Get("error") != tc.code || !strings.Contains(back.Query().Get("error_description"), tc.desc) || back.Query().Get("state") != "s-1" || back.Query().Get("ticket") != "" {
				t.Errorf("%s: %d %s", name, resp.StatusCode, back)
			}
		}
	})

	t.Run("the identity bound to a ticket stays with its client", func(t *testing.T) {
		back := w.decide(t, bob, w.claimsURL(map[string]string{"client_id": w.web.id, "ticket": w.needInfoTicket(t, w.web), "claims_redirect_uri": w.cb}), "allow")
		bound := back.Query().Get("ticket")
		if code, out := w.token(t, w.web2, url.Values{"ticket": {bound}}); code != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("web2 used the ticket bound to bob at web: %d %v", code, out)
		}
		// At its own client, claims of another user do not replace the party.
		back = w.decide(t, bob, w.claimsURL(map[string]string{"client_id": w.web.id, "ticket": w.needInfoTicket(t, w.web), "claims_redirect_uri": w.cb}), "allow")
		carol := w.userToken(t, w.web.id, w.carol, nil)
		if code, out := w.token(t, w.web, url.Values{"ticket": {back.Query().Get("ticket")}, "claim_token": {carol}, "claim_token_format": {uma.FormatAccessToken}}); code != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("carol's claim token with bob's ticket: %d %v", code, out)
		}
	})

	t.Run("CSRF: nothing binds without the party's own form", func(t *testing.T) {
		// The attacker's ticket, in a link the signed-in victim follows:
		// the GET shows a page and binds nothing.
		attackers := w.needInfoTicket(t, w.web)
		target := w.claimsURL(map[string]string{"client_id": w.web.id, "ticket": attackers, "claims_redirect_uri": w.cb})
		resp, page := w.browse(t, bob, "GET", target, nil, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Location") != "" {
			t.Fatalf("victim's GET: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		form := formOf(page)
		form.Set("decision", "allow")
		// A form the attacker made, without or with their own token (of
		// another browser), or posted from another site.
		eve := w.r.browser()
		_, evePage := w.browse(t, eve, "GET", "/signin", nil, nil)
		for name, tc := range map[string]struct {
			csrf string
			hdr  map[string]string
		}{
			"no token":              {"", nil},
			"another browser's":     {formOf(evePage).Get("csrf"), nil},
			"valid, from elsewhere": {form.Get("csrf"), map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
		} {
			f := formOf(page)
			f.Set("decision", "allow")
			f.Set("csrf", tc.csrf)
			resp, _ := w.browse(t, bob, "POST", "/uma/claims", f, tc.hdr)
			if resp.StatusCode != 403 || resp.Header.Get("Location") != "" {
				t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		// None of it bound or used the ticket: it still needs info.
		if code, out := w.token(t, w.web, url.Values{"ticket": {attackers}}); code != 403 || out["error"] != "need_info" {
			t.Fatalf("the attacker's ticket after the attempts: %d %v", code, out)
		}
	})

	t.Run("the party cancels", func(t *testing.T) {
		ticket := w.needInfoTicket(t, w.web)
		back := w.decide(t, bob, w.claimsURL(map[string]string{"client_id": w.web.id, "ticket": ticket, "claims_redirect_uri": w.cb, "state": "s-2"}), "deny")
		if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "s-2" || back.Query().Get("ticket") != "" {
			t.Fatalf("cancel: %s", back)
		}
		if code, out := w.token(t, w.web, url.Values{"ticket": {ticket}}); code != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("the ticket after cancel: %d %v", code, out)
		}
	})
}
