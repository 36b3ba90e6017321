package gateway

import (
	"net/http"
	"strings"
	"testing"
)

func TestRoutesFileErrorsNameTheField(t *testing.T) {
	g := &Gateway{opts: Options{Audience: testAudience, UMA: &UMAOptions{Issuer: testIssuer, ResourceServers: []string{"music"}}}, metrics: newMetrics(nil)}
	const up = `upstream: {url: "http://u"}`
	const pl = `match: {pathPattern: '/p/{list}/{rest...}', methods: [GET, PUT]}, ` + up
	for _, tc := range []struct{ yaml, want string }{
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, extra: 1}]", "unknown field \"extra\""},
		{"routes: [{name: a, match: {pathPrefix: /, paht: /x}, " + up + ", public: true}]", "unknown field \"paht\""},
		{"routes: {name: a}", "routes"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + "}]", "no oauth2 or uma filter"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [oauth2]}]", "public route cannot"},
		{"routes: [{match: {pathPrefix: /}, " + up + ", public: true}]", "route 1: name"},
		{"routes: [{name: 'a b', match: {pathPrefix: /}, " + up + ", public: true}]", "name"},
		{"routes: [{name: unmatched, match: {pathPrefix: /}, " + up + ", public: true}]", "name: \"unmatched\" is reserved"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true}, {name: a, match: {path: /x}, " + up + ", public: true}]", "already used"},
		{"routes: [{name: a, match: {}, " + up + ", public: true}]", "exactly one of path"},
		{"routes: [{name: a, match: {path: /x, pathPrefix: /y}, " + up + ", public: true}]", "exactly one of path"},
		{"routes: [{name: a, match: {pathPrefix: /a/../b}, " + up + ", public: true}]", "match.pathPrefix: write \"/a/../b\" as \"/b\""},
		{"routes: [{name: a, match: {pathPrefix: 'a'}, " + up + ", public: true}]", "match.pathPrefix"},
		{"routes: [{name: a, match: {pathPattern: '/x/{id'}, " + up + ", public: true}]", "match.pathPattern"},
		{"routes: [{name: a, match: {pathPattern: '/x/{a...}/y'}, " + up + ", public: true}]", "last segment"},
		{"routes: [{name: a, match: {pathPattern: '/{a}/{a}'}, " + up + ", public: true}]", "twice"},
		{"routes: [{name: a, match: {pathPrefix: /, methods: [get]}, " + up + ", public: true}]", "match.methods"},
		{"routes: [{name: a, match: {pathPrefix: /, methods: [CONNECT]}, " + up + ", public: true}]", "CONNECT"},
		{"routes: [{name: a, match: {pathPrefix: /, hosts: ['a b']}, " + up + ", public: true}]", "match.hosts"},
		{"routes: [{name: a, match: {pathPrefix: /}, upstream: {url: 'ftp://u'}, public: true}]", "upstream.url"},
		{"routes: [{name: a, match: {pathPrefix: /}, upstream: {url: 'http://user:pw@u'}, public: true}]", "upstream.url"},
		{"routes: [{name: a, match: {pathPrefix: /}, upstream: {url: 'http://u/?q=1'}, public: true}]", "upstream.url"},
		{"routes: [{name: a, match: {path: /x}, upstream: {url: 'http://u', stripPrefix: true}, public: true}]", "stripPrefix"},
		{"routes: [{name: a, match: {pathPattern: '/x/{id}'}, upstream: {url: 'http://u', rewrite: '/y/{other}'}, public: true}]", "{other}"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [nope]}]", "unknown filter \"nope\""},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [{oauth2: {}, throttle: {}}]}]", "filters[0]"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [{oauth2: {scopes: {GET: ['a b']}}}]}]", "scopes.GET"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [{oauth2: {scopes: {get: [a]}}}]}]", "scopes"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [{oauth2: {upstreamToken: {lifetime: 1m}}}]}]", "upstreamToken.audience"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [{oauth2: {upstreamToken: {audience: x}}}]}]", "no token issuer"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, oauth2]}]", "twice"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: [subject], rate: {requests: 1, per: 1s}}}]}]", "oauth2 or uma filter before throttle"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: [ip], rate: {requests: 1, per: 500ms}}}]}]", "rate.per"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: [ip], rate: {requests: 0, per: 1s}}}]}]", "rate.requests"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: [ip], rate: {requests: 1, per: soon}}}]}]", "duration"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: [ip], rate: {requests: 1, per: 1s}, groups: {x: {requests: 1, per: 1s}}}}]}]", "groupBy"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: [cookie], rate: {requests: 1, per: 1s}}}]}]", "key"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{throttle: {key: ['header:X-Thingid-Subject'], rate: {requests: 1, per: 1s}}}]}]", "identity headers"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{headers: {request: {set: {X-Thingid-Subject: admin}}}}]}]", "X-Thingid-"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{headers: {}}]}]", "at least one"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [{headers: {request: {set: {'bad name': x}}}}]}]", "header name"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resource: '{list}', scopes: {'*': [play]}}}]}]", "route a: filters[0] uma: resourceServer: required"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: photos, resource: '{list}', scopes: {'*': [play]}}}]}]", "resourceServer: \"photos\" is not in uma.trustedResourceServers"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, scopes: {'*': [play]}}}]}]", "resource: required"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: '{id}', scopes: {'*': [play]}}}]}]", "resource: \"{id}\": {id} is not a wildcard of match.pathPattern"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: '{rest}', scopes: {'*': [play]}}}]}]", "{rest...} spans segments"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: 'x/{list', scopes: {'*': [play]}}}]}]", "resource: \"x/{list\": unbalanced"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: 'a b', scopes: {'*': [play]}}}]}]", "printable ASCII without spaces"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: '{list}', scopes: {GET: [play]}}}]}]", "scopes: no scope for PUT"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: '{list}', scopes: {GET: ['a b']}}}]}]", "scopes.GET"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [{uma: {resourceServer: music, resource: fixed, scopes: {GET: [play]}}}]}]", "\"*\" is required when match.methods"},
		{"routes: [{name: a, " + pl + ", filters: [{uma: {resourceServer: music, resource: '{list}', scopes: {'*': [play]}, audience: x}}]}]", "unknown field \"audience\""},
		{"routes: [{name: a, " + pl + ", filters: [oauth2, {uma: {resourceServer: music, resource: '{list}', scopes: {'*': [play]}}}]}]", "filters[1]: uma: a route authenticates once"},
		{"routes: [{name: a, " + pl + ", public: true, filters: [{uma: {resourceServer: music, resource: '{list}', scopes: {'*': [play]}}}]}]", "public route cannot"},
		{"routes: [{name: a, " + pl + ", filters: [{throttle: {key: [subject], rate: {requests: 1, per: 1s}}}, {uma: {resourceServer: music, resource: '{list}', scopes: {'*': [play]}}}]}]", "oauth2 or uma filter before throttle"},
		{"routes: [\n  - name: [", "yaml"},
	} {
		specs, err := parseRoutes([]byte(tc.yaml))
		if err == nil {
			origin := make([]string, len(specs))
			for i := range origin {
				origin[i] = "api.yaml"
			}
			_, err = g.compileRoutes(specs, origin)
			if err != nil && !strings.Contains(err.Error(), "routes file api.yaml") {
				t.Errorf("%s: error %q does not name the file", tc.yaml, err)
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  err %v\n  want mention of %q", tc.yaml, err, tc.want)
		}
	}
}

func FuzzRoutesFile(f *testing.F) {
	for _, s := range []string{
		apiRoutes, precedenceRoutes, "", "routes: []",
		"routes: [{name: a, match: {pathPattern: '/x/{id}/{r...}', methods: [GET]}, upstream: {url: 'http://u/b', rewrite: '/{r...}/{id}'}, filters: [oauth2, {throttle: {key: [thing, ip], groupBy: model, rate: {requests: 5, per: 1s}, groups: {M: {requests: 1, per: 1m, burst: 2}}}}]}]",
	} {
		f.Add(s)
	}
	g := &Gateway{opts: Options{Audience: testAudience}, metrics: newMetrics(nil)}
	f.Fuzz(func(t *testing.T, yaml string) {
		specs, err := parseRoutes([]byte(yaml))
		if err != nil {
			return
		}
		origin := make([]string, len(specs))
		routes, err := g.compileRoutes(specs, origin)
		if err != nil {
			return
		}
		tbl := newTable(routes)
		for _, r := range routes {
			if r.name == "" || r.upstream == nil || r.proxy == nil || r.auth == nil {
				t.Fatalf("incomplete route %+v", r)
			}
		}
		_, _ = tbl.lookup("h", "/x/1/2", http.MethodGet)
	})
}
