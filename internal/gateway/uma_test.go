package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/tokens"
)

// unreachable is an authorization server that gives no tickets, as one
// down would; the tests of the uma filter against the real one are in
// internal/server (uma_gateway_test.go).
type unreachable struct{}

func (unreachable) Ticket(context.Context, string, string, string, []string) (string, error) {
	return "", errors.New("connection refused")
}

const umaRoutes = `
routes:
  - name: playlists
    match: {pathPattern: "/playlists/{list}", methods: [GET, PUT]}
    upstream: {url: UPSTREAM}
    filters:
      - uma: {resourceServer: music, resource: "{list}", scopes: {GET: [play], PUT: [edit]}}
`

func withUMA(o *Options) {
	o.UMA = &UMAOptions{Issuer: testIssuer, ResourceServers: []string{"music"}, Tickets: unreachable{}}
}

// rpt is an RPT of the env's platform for the gateway with perms.
func (e *env) rpt(perms ...tokens.Permission) string {
	e.t.Helper()
	return e.token("", func(c *tokens.Claims) { c.Permissions, _ = json.Marshal(perms) })
}

// The permission check needs no authorization server: an RPT passes on
// its own, at the proxy and at forward-auth, where the answer carries the
// resource headers (empty when there are none, as every identity header).
// Without the authorization server, no ticket: 403 and the warning of UMA
// 2.0 Grant §3.2.
func TestUMAFilterWithoutTheAuthorizationServer(t *testing.T) {
	e := newEnv(t, umaRoutes, withUMA, withForwardAuth)
	rpt := e.rpt(tokens.Permission{ResourceID: "l1", Scopes: []string{"play", "read"}})
	resp, body := e.do(nil, http.MethodGet, "/playlists/l1", "Authorization", "Bearer "+rpt, HeaderResource, "l2")
	got := upstreamSaw(t, body)
	if resp.StatusCode != http.StatusOK || got.Header.Get(HeaderResource) != "l1" || got.Header.Get(HeaderResourceScopes) != "play read" || got.Header.Get(HeaderSubject) != "user-alice" {
		t.Fatalf("%d %v", resp.StatusCode, got.Header)
	}
	resp, body = e.do(nil, http.MethodGet, forwardPath, "X-Original-Method", "GET", "X-Original-URI", "/playlists/l1",
		"X-Forwarded-Host", "api.example.com", "X-Forwarded-Proto", "https", "Authorization", "Bearer "+rpt)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderResource) != "l1" || resp.Header.Get(HeaderResourceScopes) != "play read" {
		t.Fatalf("forward-auth: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	for _, tc := range []struct{ method, path, auth string }{
		{"GET", "/playlists/l1", ""},
		{"PUT", "/playlists/l1", "Bearer " + rpt},
		{"GET", "/playlists/l2", "Bearer " + e.token("play")},
	} {
		var h []string
		if tc.auth != "" {
			h = []string{"Authorization", tc.auth}
		}
		resp, body := e.do(nil, tc.method, tc.path, h...)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Warning") != `199 - "UMA Authorization Server Unreachable"` ||
			problemOf(t, resp, body).Error != "temporarily_unavailable" || resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s %s: %d %v %s", tc.method, tc.path, resp.StatusCode, resp.Header, body)
		}
	}
	if n := e.counter("thingid_gateway_denials_total", map[string]string{"route": "playlists", "reason": "ticket_error"}); n != 3 {
		t.Errorf("ticket errors counted: %v", n)
	}
}

func TestUMARoutes(t *testing.T) {
	const route = `routes: [{name: m, match: {pathPattern: '/p/{list}'}, upstream: {url: "http://u"}, filters: [
  {uma: {resourceServer: music, resource: 'playlist:{list}', scopes: {'*': [play], PUT: [edit]}}},
  {throttle: {key: [subject], rate: {requests: 1, per: 1s}}}]}]`
	specs, err := parseRoutes([]byte(route))
	if err != nil {
		t.Fatal(err)
	}
	without := &Gateway{opts: Options{Audience: testAudience}, metrics: newMetrics(nil)}
	if _, err := without.compileRoutes(specs, []string{"m.yaml"}); err == nil || !strings.Contains(err.Error(), "filters[0] uma: this gateway has no UMA authorization server") {
		t.Fatalf("a gateway without UMA: %v", err)
	}
	g := &Gateway{opts: Options{Audience: testAudience, UMA: &UMAOptions{Issuer: testIssuer, ResourceServers: []string{"music"}}}, metrics: newMetrics(nil)}
	routes, err := g.compileRoutes(specs, []string{"m.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	f := routes[0].filters[0].(*umaFilter)
	for method, want := range map[string]string{"GET": "play", "HEAD": "play", "PUT": "play edit", "DELETE": "play"} {
		if got := strings.Join(f.scopes.required(method), " "); got != want {
			t.Errorf("%s needs %q, want %q", method, got, want)
		}
	}
	if id, ok := f.resource.expand(map[string]string{"list": "road%20trip"}); !ok || id != "playlist:road trip" {
		t.Errorf("expand: %q %v", id, ok)
	}
}

func TestResourceTemplate(t *testing.T) {
	pattern, err := parsePattern("/u/{user}/p/{list}/{rest...}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tmpl   string
		params map[string]string
		want   string // "" for no valid resource id
	}{
		{"{list}", map[string]string{"list": "abc"}, "abc"},
		{"fixed-id", nil, "fixed-id"},
		{"thing:{list}", map[string]string{"list": "t1"}, "thing:t1"},
		{"{user}.{list}", map[string]string{"user": "u", "list": "l"}, "u.l"},
		{"{list}", map[string]string{"list": "a%3Ab"}, "a:b"},
		{"{list}", map[string]string{"list": "caf%C3%A9"}, "café"},
		{"{list}", map[string]string{"list": "%C2%85"}, ""},                            // a C1 control character
		{"{list}", map[string]string{"list": "%FF"}, ""},                               // not UTF-8
		{"{list}", map[string]string{"list": "%zz"}, ""},                               // does not decode
		{"{list}", map[string]string{}, ""},                                            // empty
		{"x{list}", map[string]string{"list": strings.Repeat("y", maxResourceID)}, ""}, // too long
	} {
		rt, err := parseResourceTemplate(tc.tmpl, pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		got, ok := rt.expand(tc.params)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s with %v: %q %v, want %q", tc.tmpl, tc.params, got, ok, tc.want)
		}
	}
}

// FuzzResourceTemplate: the path → resource mapping never panics; what it
// accepts names only one-segment wildcards of the pattern, writes back as
// it was read, and makes only valid resource ids.
func FuzzResourceTemplate(f *testing.F) {
	for _, s := range []string{"{list}", "thing:{list}", "{user}.{list}", "fixed", "{rest}", "{", "}", "{}", "{list", "a}b", "{{list}}", "{li st}", "x\x00", "é{list}"} {
		f.Add(s, "abc")
	}
	f.Add("{list}", "%C3%A9%00")
	pattern, err := parsePattern("/u/{user}/p/{list}/{rest...}")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tmpl, value string) {
		rt, err := parseResourceTemplate(tmpl, pattern)
		if err != nil {
			return
		}
		var back strings.Builder
		for _, p := range rt.parts {
			switch {
			case p.param == "user" || p.param == "list":
				back.WriteString("{" + p.param + "}")
			case p.param != "":
				t.Fatalf("%q: accepted wildcard {%s}", tmpl, p.param)
			case strings.ContainsAny(p.lit, "{} ") || p.lit == "":
				t.Fatalf("%q: accepted literal %q", tmpl, p.lit)
			default:
				back.WriteString(p.lit)
			}
		}
		if back.String() != tmpl || len(tmpl) > maxResourceID {
			t.Fatalf("%q read as %q", tmpl, back.String())
		}
		id, ok := rt.expand(map[string]string{"user": value, "list": value})
		if ok && (id == "" || len(id) > maxResourceID || !utf8.ValidString(id) || strings.ContainsAny(id, "\x00\r\n")) {
			t.Fatalf("%q with %q made resource id %q", tmpl, value, id)
		}
	})
}

func TestQuotedString(t *testing.T) {
	for in, want := range map[string]string{
		"umt_ABC":                  `"umt_ABC"`,
		`https://id.example.com/a`: `"https://id.example.com/a"`,
		`a"b\c`:                    `"a\"b\\c"`,
		"a\r\nb\x00é\tc":           "\"a??b???\tc\"",
		"":                         `""`,
	} {
		if got := quotedString(in); got != want {
			t.Errorf("quotedString(%q) = %s, want %s", in, got, want)
		}
	}
}

// Every routes file docs/gateway.md shows is one the gateway loads.
func TestDocumentedRoutesFiles(t *testing.T) {
	doc, err := os.ReadFile("../../docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "", func(o *Options) {
		o.UMA = &UMAOptions{Issuer: testIssuer, ResourceServers: []string{"9f3c2a1e-music-service"}, Tickets: unreachable{}}
		withHouseholds(t, o) // for the policy filter's example
	})
	n := 0
	for rest := string(doc); ; {
		_, after, ok := strings.Cut(rest, "\n```yaml\nroutes:\n")
		if !ok {
			break
		}
		block, tail, _ := strings.Cut(after, "\n```\n")
		specs, err := parseRoutes([]byte("routes:\n" + block))
		if err == nil {
			_, err = e.g.compileRoutes(specs, make([]string, len(specs)))
		}
		if err != nil {
			t.Errorf("docs/gateway.md: routes file %d: %v", n+1, err)
		}
		n, rest = n+1, tail
	}
	if n < 2 {
		t.Fatalf("docs/gateway.md shows %d routes files; want the general one and the uma one", n)
	}
}
