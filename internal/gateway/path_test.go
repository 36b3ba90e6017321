package gateway

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{"", "/", nil},
		{"/", "/", nil},
		{"/a/b", "/a/b", nil},
		{"/a/b/", "/a/b/", nil},
		{"//a///b//", "/a/b/", nil},
		{"/a/./b/.", "/a/b/", nil},
		{"/a/b/..", "/a/", nil},
		{"/a/../b", "/b", nil},
		{"/a/%2e%2E/b", "/b", nil},
		{"/a/.%2e/b", "/b", nil},
		{"/%61%7E%2D", "/a~-", nil},
		{"/a%20b%c3%a9", "/a%20b%C3%A9", nil},
		{"/a%3fb", "/a%3Fb", nil},
		{"/..", "", errPathTooHigh},
		{"/a/../..", "", errPathTooHigh},
		{"/%2e%2e/etc", "", errPathTooHigh},
		{"/a%2fb", "", errPathEscape},
		{"/a%2Fb", "", errPathEscape},
		{"/a%5cb", "", errPathEscape},
		{"/a\\b", "", errPathEscape},
		{"/a%00", "", errPathEscape},
		{"/a%0d%0a", "", errPathEscape},
		{"/a\x7f", "", errPathEscape},
		{"/a%", "", errPathSyntax},
		{"/a%2", "", errPathSyntax},
		{"/a%zz", "", errPathSyntax},
		{"a/b", "", errPathSyntax},
		{"*", "", errPathSyntax},
		{"/" + strings.Repeat("a", maxPathLen), "", errPathSyntax},
	} {
		got, err := canonicalPath(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x/%2e%2E/y", "/a%2fb", "/a/./b/", "/%41%7e", "/a\\b", "/..%2f", "/a%c3%a9/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := canonicalPath(p)
		if err != nil {
			return
		}
		again, err := canonicalPath(c)
		if err != nil || again != c {
			t.Fatalf("not idempotent: %q → %q → %q, %v", p, c, again, err)
		}
		if !strings.HasPrefix(c, "/") || strings.Contains(c, "//") || strings.Contains(c, "\\") {
			t.Fatalf("%q → %q", p, c)
		}
		for _, seg := range strings.Split(c[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q → %q keeps a dot segment", p, c)
			}
		}
		low := strings.ToLower(c)
		for _, bad := range []string{"%2f", "%5c", "%00", "%2e"} {
			if strings.Contains(low, bad) {
				t.Fatalf("%q → %q keeps %s", p, c, bad)
			}
		}
		// What the upstream decodes splits into the same segments as what matched.
		if len(strings.Split(unescapePath(c), "/")) != len(strings.Split(c, "/")) {
			t.Fatalf("%q → %q decodes into other segments: %q", p, c, unescapePath(c))
		}
	})
}

// compiled builds routes from YAML without a running gateway.
func compiled(t testing.TB, yaml string) *table {
	t.Helper()
	g := &Gateway{opts: Options{Audience: testAudience}, metrics: newMetrics(nil)}
	specs, err := parseRoutes([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	origin := make([]string, len(specs))
	for i := range origin {
		origin[i] = "test.yaml"
	}
	routes, err := g.compileRoutes(specs, origin)
	if err != nil {
		t.Fatal(err)
	}
	return newTable(routes)
}

const precedenceRoutes = `
routes:
  - {name: catch-all, match: {pathPrefix: /}, upstream: {url: "http://u"}, public: true}
  - {name: api, match: {pathPrefix: /api}, upstream: {url: "http://u"}, public: true}
  - {name: api-v2, match: {pathPrefix: /api/v2}, upstream: {url: "http://u"}, public: true}
  - {name: device, match: {pathPattern: "/api/devices/{id}"}, upstream: {url: "http://u"}, public: true}
  - {name: device-exact, match: {path: /api/devices/me}, upstream: {url: "http://u"}, public: true}
  - {name: files, match: {pathPattern: "/files/{path...}", methods: [GET]}, upstream: {url: "http://u"}, public: true}
  - {name: files-put, match: {pathPattern: "/files/{path...}", methods: [PUT]}, upstream: {url: "http://u"}, public: true}
  - {name: tenant, match: {hosts: ["*.tenants.example"], pathPrefix: /api}, upstream: {url: "http://u"}, public: true}
  - {name: acme, match: {hosts: [acme.tenants.example], pathPrefix: /}, upstream: {url: "http://u"}, public: true}
`

func TestRoutePrecedence(t *testing.T) {
	tbl := compiled(t, precedenceRoutes)
	for _, tc := range []struct {
		host, method, path, want string
		params                   map[string]string
	}{
		{"x", "GET", "/", "catch-all", nil},
		{"x", "GET", "/apix", "catch-all", nil},
		{"x", "GET", "/api", "api", nil},
		{"x", "GET", "/api/", "api", nil},
		{"x", "GET", "/api/v2/things", "api-v2", nil},
		{"x", "GET", "/api/v20", "api", nil},
		{"x", "GET", "/api/devices/d1", "device", map[string]string{"id": "d1"}},
		{"x", "GET", "/api/devices/d1/x", "api", nil},
		{"x", "GET", "/api/devices/", "api", nil},
		{"x", "GET", "/api/devices/me", "device-exact", nil},
		{"x", "HEAD", "/files/a/b", "files", map[string]string{"path": "a/b"}},
		{"x", "GET", "/files", "files", map[string]string{"path": ""}},
		{"x", "GET", "/filesx/a", "catch-all", nil},
		{"x", "GET", "/api/devicesx/d1", "api", nil},
		{"x", "GET", "/api/device/d1", "api", nil},
		{"x", "PUT", "/files/a", "files-put", map[string]string{"path": "a"}},
		{"x", "DELETE", "/files/a", "catch-all", nil},
		{"b.tenants.example", "GET", "/api/x", "tenant", nil},
		{"b.tenants.example", "GET", "/other", "catch-all", nil},
		{"tenants.example", "GET", "/api/x", "api", nil},
		{"acme.tenants.example", "GET", "/api/x", "acme", nil},
	} {
		f, _ := tbl.lookup(tc.host, tc.path, tc.method)
		if f.route == nil || f.route.name != tc.want {
			t.Errorf("%s %s%s: %v, want %s", tc.method, tc.host, tc.path, f.route, tc.want)
			continue
		}
		for k, v := range tc.params {
			if f.params[k] != v {
				t.Errorf("%s %s: {%s} = %q, want %q", tc.method, tc.path, k, f.params[k], v)
			}
		}
	}
	if canonicalHost("API.Example.COM.:9443") != "api.example.com" || canonicalHost("[::1]:9443") != "::1" {
		t.Error("canonicalHost")
	}
}

func TestUpstreamPath(t *testing.T) {
	tbl := compiled(t, `
routes:
  - {name: strip, match: {pathPrefix: /api}, upstream: {url: "http://u/v1/", stripPrefix: true}, public: true}
  - {name: keep, match: {pathPrefix: /keep}, upstream: {url: "http://u/base"}, public: true}
  - {name: rewrite, match: {pathPattern: "/d/{id}/{rest...}"}, upstream: {url: "http://u/x", rewrite: "/things/{id}/data/{rest...}"}, public: true}
  - {name: root, match: {path: /exact}, upstream: {url: "http://u"}, public: true}
`)
	for _, tc := range []struct{ path, want string }{
		{"/api", "/v1"},
		{"/api/", "/v1/"},
		{"/api/a%20b/c", "/v1/a%20b/c"},
		{"/keep/x", "/base/keep/x"},
		{"/d/42/a/b", "/x/things/42/data/a/b"},
		{"/d/42/", "/x/things/42/data/"},
		{"/exact", "/exact"},
	} {
		f, _ := tbl.lookup("h", tc.path, http.MethodGet)
		if f.route == nil {
			t.Fatalf("%s: no route", tc.path)
		}
		if got := f.route.upstreamPath(tc.path, f); got != tc.want {
			t.Errorf("%s → %q, want %q", tc.path, got, tc.want)
		}
	}
}

func FuzzLookup(f *testing.F) {
	tbl := compiled(f, precedenceRoutes)
	f.Add("x", "GET", "/api/devices/d1")
	f.Add("acme.tenants.example", "PUT", "/files/a/../b")
	f.Add("", "", "//%2e%2e/x")
	f.Fuzz(func(t *testing.T, host, method, raw string) {
		p, err := canonicalPath(raw)
		if err != nil {
			return
		}
		fd, _ := tbl.lookup(canonicalHost(host), p, method)
		if fd.route == nil {
			return
		}
		if _, _, ok := fd.route.match.matchPath(p); !ok || !fd.route.match.allows(method) {
			t.Fatalf("%s %s matched %s, which does not match it", method, p, fd.route.name)
		}
		_ = fd.route.upstreamPath(p, fd)
	})
}
