package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/gateway"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// umaGateway is the UMA world with the gateway in front of the music
// service (a real HTTP upstream) and of the speakers' API.
type umaGateway struct {
	*umaWorld
	gw       string // the gateway's base URL
	upstream *httptest.Server
	// seen is what the upstream received last.
	seen chan *http.Request
}

const umaRoutes = `
routes:
  - name: playlists
    match: {pathPattern: "/music/playlists/{playlist}", methods: [GET, PUT]}
    upstream: {url: UPSTREAM, rewrite: "/playlists/{playlist}"}
    filters:
      - uma:
          resourceServer: MUSIC
          resource: "{playlist}"
          scopes: {GET: [play], PUT: [edit]}
  - name: speakers
    match: {pathPattern: "/speakers/{thing}/volume"}
    upstream: {url: UPSTREAM}
    filters:
      - uma: {resourceServer: MUSIC, resource: "thing:{thing}", scopes: {"*": [use]}}
`

func newUMAGateway(t *testing.T, before ...func(*Platform)) *umaGateway {
	g := &umaGateway{seen: make(chan *http.Request, 64)}
	g.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.seen <- r
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "party": r.Header.Get(gateway.HeaderSubject)})
	}))
	t.Cleanup(g.upstream.Close)
	g.umaWorld = startUMAWorld(t, func(w *umaWorld, p *Platform) {
		routes := strings.NewReplacer("UPSTREAM", g.upstream.URL, "MUSIC", w.music.id).Replace(umaRoutes)
		if err := os.MkdirAll(p.Config.Gateway.Routes, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.Config.Gateway.Routes, "music.yaml"), []byte(routes), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, f := range before {
			f(p)
		}
	})
	m := regexp.MustCompile(`thingid gateway is serving on (https://\S+) `).FindStringSubmatch(g.r.out.String())
	if m == nil {
		t.Fatalf("the gateway's address was not printed:\n%s", g.r.out)
	}
	g.gw = m[1]
	return g
}

// call sends a request through the gateway; hdr are name, value pairs.
func (g *umaGateway) call(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, g.gw+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := g.r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// umaTicket reads the UMA challenge of a 401 as a client written from UMA
// 2.0 Grant §3.2 would (RFC 9110 §11.6.1 auth-params, quoted strings with
// escapes), checks its realm and as_uri, and returns the ticket.
func (g *umaGateway) umaTicket(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("want 401 with a UMA challenge: %d %s", resp.StatusCode, body)
	}
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		rest, ok := strings.CutPrefix(v, "UMA ")
		if !ok {
			continue
		}
		params := authParams(t, rest)
		if params["realm"] != "thingid" || params["as_uri"] != g.r.p.Config.HTTP.PublicURL || !uma.ValidTicket(params["ticket"]) {
			t.Fatalf("UMA challenge %q: %v", v, params)
		}
		return params["ticket"]
	}
	t.Fatalf("no UMA challenge in %q (%s)", resp.Header.Values("WWW-Authenticate"), body)
	return ""
}

// authParams parses name=token or name="quoted" pairs separated by commas.
func authParams(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		name, rest, ok := strings.Cut(s, "=")
		if !ok {
			t.Fatalf("auth-param without '=': %q", s)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		var val strings.Builder
		if strings.HasPrefix(rest, `"`) {
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' {
					i++
				}
				val.WriteByte(rest[i])
			}
			rest = rest[min(i+1, len(rest)):]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val.WriteString(strings.TrimSpace(rest[:end]))
			rest = rest[end:]
		}
		out[name] = val.String()
		s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ","))
	}
	return out
}

// playlist registers a playlist of alice's at the music service.
func (g *umaGateway) playlist(t *testing.T, name string) string {
	t.Helper()
	code, out := g.register(t, g.pat(t, g.music), `{"name":`+jsonQuote(name)+`,"resource_scopes":["play","edit"],"owner":"alice"}`)
	if code != 201 {
		t.Fatalf("register: %d %v", code, out)
	}
	return out["_id"].(string)
}

// share shares resource with bob for scopes, as alice, and returns the share's id.
func (g *umaGateway) share(t *testing.T, resource string, scopes ...string) string {
	t.Helper()
	sc, _ := json.Marshal(scopes)
	code, out := g.call2(t, g.signin(t, "alice"), "POST", "/api/v1/uma/shares", `{"resourceId":`+jsonQuote(resource)+`,"user":"bob","scopes":`+string(sc)+`}`)
	if code != 201 {
		t.Fatalf("share: %d %v", code, out)
	}
	return out["id"].(string)
}

func (g *umaGateway) call2(t *testing.T, c *http.Client, method, path, body string) (int, map[string]any) {
	t.Helper()
	return g.umaWorld.call(t, c, method, path, jsonHdr(""), body)
}

// rpt redeems ticket as client c for bob (c's access token for bob as the
// claim token), and returns the answer.
func (g *umaGateway) rpt(t *testing.T, c clientCreds, ticket string) (int, map[string]any) {
	t.Helper()
	return g.token(t, c, url.Values{"ticket": {ticket}, "claim_token": {g.userToken(t, c.id, g.bob, nil)}, "claim_token_format": {uma.FormatAccessToken}})
}

func (g *umaGateway) mustRPT(t *testing.T, c clientCreds, ticket string) string {
	t.Helper()
	code, out := g.rpt(t, c, ticket)
	if code != 200 || out["access_token"] == nil {
		t.Fatalf("RPT: %d %v", code, out)
	}
	return out["access_token"].(string)
}

// The speaker's flow through the gateway: no RPT, 401 with a ticket; the
// ticket and the client's token for bob at the token endpoint give an RPT
// once alice has shared; with it the request reaches the music service,
// which learns who asks and what for, and nothing the client made up.
func TestUMAGatewayFlow(t *testing.T) {
	g := newUMAGateway(t)
	list := g.playlist(t, "Road trip")
	path := "/music/playlists/" + list

	resp, body := g.call(t, "GET", path)
	ticket := g.umaTicket(t, resp, body)
	if problemError(t, body) != "" || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("the 401 is an RFC 9457 problem without an error code (RFC 6750 §3.1): %s", body)
	}
	// Before alice decides, the ticket makes a pending request.
	if code, out := g.rpt(t, g.app, ticket); code != 403 || out["error"] != "request_submitted" {
		t.Fatalf("before sharing: %d %v", code, out)
	}
	g.share(t, list, "play")
	resp, body = g.call(t, "GET", path)
	rpt := g.mustRPT(t, g.app, g.umaTicket(t, resp, body))

	resp, body = g.call(t, "GET", path, "Authorization", "Bearer "+rpt,
		gateway.HeaderSubject, g.alice.ID, gateway.HeaderResource, "other", "X_Thingid_Resource_Scopes", "edit")
	if resp.StatusCode != 200 || !strings.Contains(body, `"path":"/playlists/`+list+`"`) {
		t.Fatalf("with the RPT: %d %s", resp.StatusCode, body)
	}
	up := <-g.seen
	want := map[string]string{gateway.HeaderSubject: g.bob.ID, gateway.HeaderClient: g.app.id, gateway.HeaderResource: list,
		gateway.HeaderResourceScopes: "play", "Authorization": ""}
	for k, v := range want {
		if got := up.Header.Values(k); strings.Join(got, ",") != v {
			t.Errorf("upstream header %s = %q, want %q", k, got, v)
		}
	}
	for k := range up.Header {
		if strings.HasPrefix(strings.ToLower(k), "x_thingid") {
			t.Errorf("a client's %s reached the upstream", k)
		}
	}
	// The RPT is reused: verified once, then from the gateway's cache.
	if resp, body := g.call(t, "HEAD", path, "Authorization", "Bearer "+rpt); resp.StatusCode != 200 {
		t.Fatalf("HEAD needs GET's scope: %d %s", resp.StatusCode, body)
	}
	<-g.seen
}

// problemError is the "error" member of an RFC 9457 answer.
func problemError(t *testing.T, body string) string {
	t.Helper()
	var p struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a problem: %s", body)
	}
	return p.Error
}

// TestUMAGatewayAttacks tries every way past the uma filter.
func TestUMAGatewayAttacks(t *testing.T) {
	g := newUMAGateway(t)
	ctx := context.Background()
	a, b := g.playlist(t, "A"), g.playlist(t, "B")
	shareA := g.share(t, a, "play")
	resp, body := g.call(t, "GET", "/music/playlists/"+a)
	rptA := g.mustRPT(t, g.app, g.umaTicket(t, resp, body))
	if resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "Bearer "+rptA); resp.StatusCode != 200 {
		t.Fatalf("the RPT for A on A: %d %s", resp.StatusCode, body)
	}
	<-g.seen

	t.Run("RPT for resource A presented for resource B", func(t *testing.T) {
		resp, body := g.call(t, "GET", "/music/playlists/"+b, "Authorization", "Bearer "+rptA)
		ticket := g.umaTicket(t, resp, body)
		// The ticket is for B, and bob has no share of B: the owner is asked.
		if code, out := g.rpt(t, g.app, ticket); code != 403 || out["error"] != "request_submitted" {
			t.Fatalf("ticket for B: %d %v", code, out)
		}
	})
	t.Run("scope not granted", func(t *testing.T) {
		resp, body := g.call(t, "PUT", "/music/playlists/"+a, "Authorization", "Bearer "+rptA)
		ticket := g.umaTicket(t, resp, body)
		if !strings.Contains(body, "edit") {
			t.Errorf("the refusal does not name the scope: %s", body)
		}
		// The ticket asks for edit, which no share grants bob.
		if code, out := g.rpt(t, g.app, ticket); code != 403 || out["error"] != "request_submitted" {
			t.Fatalf("ticket for edit: %d %v", code, out)
		}
	})
	t.Run("ticket from the 401 used by another client", func(t *testing.T) {
		// The 401 to a request with app's token binds its ticket to app.
		resp, body := g.call(t, "PUT", "/music/playlists/"+a, "Authorization", "Bearer "+rptA)
		ticket := g.umaTicket(t, resp, body)
		if code, out := g.rpt(t, g.app2, ticket); code != 400 || out["error"] != "invalid_grant" || !strings.Contains(out["error_description"].(string), "another client") {
			t.Fatalf("app2 redeemed app's ticket: %d %v", code, out)
		}
	})
	t.Run("plain access token", func(t *testing.T) {
		tok := g.userToken(t, g.app.id, g.bob, func(c *tokens.Claims) { c.Audience = []string{g.r.p.Config.Gateway.Audience} })
		resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "Bearer "+tok)
		ticket := g.umaTicket(t, resp, body)
		if code, out := g.rpt(t, g.app2, ticket); code != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("the ticket of app's token, redeemed by app2: %d %v", code, out)
		}
	})
	t.Run("expired permission", func(t *testing.T) {
		now := time.Now()
		mint := func(exp time.Time) string {
			return g.userToken(t, g.app.id, g.bob, func(c *tokens.Claims) {
				c.Audience, c.Scope = []string{g.r.p.Config.Gateway.Audience}, nil
				c.Permissions, _ = json.Marshal([]tokens.Permission{{ResourceID: a, Scopes: []string{"play"}, ExpiresAt: exp.Unix()}})
			})
		}
		if resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "Bearer "+mint(now.Add(time.Minute))); resp.StatusCode != 200 {
			t.Fatalf("a live permission: %d %s", resp.StatusCode, body)
		}
		<-g.seen
		resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "Bearer "+mint(now.Add(-time.Second)))
		g.umaTicket(t, resp, body)
	})
	t.Run("expired RPT", func(t *testing.T) {
		expired := g.userToken(t, g.app.id, g.bob, func(c *tokens.Claims) {
			c.Audience, c.Scope = []string{g.r.p.Config.Gateway.Audience}, nil
			c.IssuedAt, c.ExpiresAt = time.Now().Add(-15*time.Minute), time.Now().Add(-10*time.Minute)
			c.Permissions, _ = json.Marshal([]tokens.Permission{{ResourceID: a, Scopes: []string{"play"}}})
		})
		resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "Bearer "+expired)
		if problemError(t, body) != "invalid_token" || !strings.Contains(body, "expired") {
			t.Fatalf("expired RPT: %d %s", resp.StatusCode, body)
		}
		// A new RPT would do: a fresh ticket comes with the refusal.
		g.mustRPT(t, g.app, g.umaTicket(t, resp, body))
	})
	t.Run("DPoP-bound RPT without its proof", func(t *testing.T) {
		h := dpoptest.NewHolder(t)
		resp, body := g.call(t, "GET", "/music/playlists/"+a)
		ticket := g.umaTicket(t, resp, body)
		tokenURL := g.r.p.Config.HTTP.PublicURL + "/oauth2/token"
		code, out := g.umaWorld.call(t, nil, "POST", "/oauth2/token", map[string]string{
			"Content-Type":  "application/x-www-form-urlencoded",
			"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(g.app.id)+":"+url.QueryEscape(g.app.secret))),
			"DPoP":          h.Proof(t, dpoptest.Claims("POST", tokenURL, time.Now())),
		}, url.Values{"grant_type": {uma.GrantType}, "ticket": {ticket}, "claim_token": {g.userToken(t, g.app.id, g.bob, nil)},
			"claim_token_format": {uma.FormatAccessToken}}.Encode())
		if code != 200 || out["token_type"] != "DPoP" {
			t.Fatalf("DPoP-bound RPT: %d %v", code, out)
		}
		rpt := out["access_token"].(string)
		target := g.r.p.Config.Gateway.PublicURL + "/music/playlists/" + a
		proof := func(claims map[string]any) string {
			claims["ath"] = dpoptest.ATH(rpt)
			return h.Proof(t, claims)
		}
		for name, hdr := range map[string][]string{
			"as Bearer":            {"Authorization", "Bearer " + rpt},
			"DPoP without a proof": {"Authorization", "DPoP " + rpt},
			"another key's proof":  {"Authorization", "DPoP " + rpt, "DPoP", dpoptest.NewHolder(t).Proof(t, map[string]any{"jti": "x1", "htm": "GET", "htu": target, "iat": time.Now().Unix(), "ath": dpoptest.ATH(rpt)})},
		} {
			resp, body := g.call(t, "GET", "/music/playlists/"+a, hdr...)
			if resp.StatusCode != 401 || strings.Contains(body, `"path"`) {
				t.Errorf("%s: %d %s", name, resp.StatusCode, body)
			}
		}
		if resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "DPoP "+rpt, "DPoP", proof(dpoptest.Claims("GET", target, time.Now()))); resp.StatusCode != 200 {
			t.Fatalf("with its proof: %d %s", resp.StatusCode, body)
		}
		<-g.seen
	})
	t.Run("unknown resources and scopes", func(t *testing.T) {
		photos := g.userToken(t, g.photos.id, g.carol, func(c *tokens.Claims) { c.Scope = []string{uma.ScopeProtection} })
		code, out := g.register(t, photos, `{"name":"carol's album","resource_scopes":["play"]}`)
		if code != 201 {
			t.Fatalf("photos registers: %d %v", code, out)
		}
		for path, want := range map[string]int{
			"/music/playlists/no-such-playlist":            404,
			"/music/playlists/" + out["_id"].(string):      404, // another resource server's
			"/music/playlists/%C2%85":                      404, // a control character is no resource id
			"/music/playlists/" + strings.Repeat("x", 300): 404,
		} {
			resp, body := g.call(t, "GET", path)
			if resp.StatusCode != want || resp.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("%s: %d %q %s, want %d without a ticket", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, want)
			}
		}
	})
	t.Run("a shared thing", func(t *testing.T) {
		speaker, err := g.r.p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: "living-room speaker", Type: store.ThingDevice, Status: store.StatusActive})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.r.p.Identity.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: g.alice.ID}, To: store.Ref{Kind: store.KindThing, ID: speaker.ID}}); err != nil {
			t.Fatal(err)
		}
		path := "/speakers/" + speaker.ID + "/volume"
		resp, body := g.call(t, "POST", path)
		ticket := g.umaTicket(t, resp, body)
		g.share(t, uma.ThingResourceID(speaker.ID), "use")
		rpt := g.mustRPT(t, g.app, ticket)
		if resp, body := g.call(t, "POST", path, "Authorization", "Bearer "+rpt); resp.StatusCode != 200 {
			t.Fatalf("the shared speaker: %d %s", resp.StatusCode, body)
		}
		if up := <-g.seen; up.Header.Get(gateway.HeaderResource) != "thing:"+speaker.ID || up.Header.Get(gateway.HeaderResourceScopes) != "use" {
			t.Fatalf("upstream saw %v", up.Header)
		}
	})
	// Last: the share behind rptA goes, and the very next request with it
	// is refused (the grant.revoke event reached the gateway before the
	// owner's DELETE was answered), with a fresh ticket.
	t.Run("RPT after the share was revoked", func(t *testing.T) {
		if code, out := g.call2(t, g.signin(t, "alice"), "DELETE", "/api/v1/uma/shares/"+shareA, ""); code != 204 {
			t.Fatalf("revoke: %d %v", code, out)
		}
		resp, body := g.call(t, "GET", "/music/playlists/"+a, "Authorization", "Bearer "+rptA)
		if problemError(t, body) != "invalid_token" || !strings.Contains(body, "revoked") {
			t.Fatalf("after revocation: %d %s", resp.StatusCode, body)
		}
		if !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), " | "), `Bearer realm="thingid", error="invalid_token"`) {
			t.Errorf("no RFC 6750 challenge: %q", resp.Header.Values("WWW-Authenticate"))
		}
		g.umaTicket(t, resp, body)
	})
}
