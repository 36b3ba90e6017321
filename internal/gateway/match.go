package gateway

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Kinds of path match, from the least to the most specific at equal length.
const (
	matchPrefix = iota
	matchPattern
	matchExact
)

// matcher decides whether a request is a route's: host, path, method.
type matcher struct {
	kind int
	// path is the exact path, or the prefix without its trailing slash ("" for "/").
	path    string
	pattern []patSeg
	// lead is what every path of a pattern starts with: its literal
	// segments before the first wildcard, each after its "/", and the "/"
	// of that wildcard unless it is {rest...}. Checking it first spares a
	// path that cannot match the split into segments.
	lead    string
	methods []string // upper case; empty: any
}

// patSeg is one segment of a path pattern: a literal, {name} (one non-empty
// segment) or {name...} (the rest of the path, last only).
type patSeg struct {
	lit  string
	name string
	rest bool
}

// newMatcher compiles the match section of a route.
func newMatcher(m matchSpec) (*matcher, error) {
	mt := &matcher{}
	set := 0
	for _, p := range []string{m.Path, m.PathPrefix, m.PathPattern} {
		if p != "" {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("match: set exactly one of path, pathPrefix and pathPattern")
	}
	switch {
	case m.Path != "":
		p, err := canonicalSpecPath("match.path", m.Path)
		if err != nil {
			return nil, err
		}
		mt.kind, mt.path = matchExact, p
	case m.PathPrefix != "":
		p, err := canonicalSpecPath("match.pathPrefix", m.PathPrefix)
		if err != nil {
			return nil, err
		}
		mt.kind, mt.path = matchPrefix, strings.TrimSuffix(p, "/")
	default:
		segs, err := parsePattern(m.PathPattern)
		if err != nil {
			return nil, err
		}
		mt.kind, mt.pattern = matchPattern, segs
		for _, sg := range segs {
			if sg.rest {
				break // {rest...} may be empty: /x/{rest...} matches /x
			}
			mt.lead += "/"
			if sg.name != "" {
				break
			}
			mt.lead += sg.lit
		}
	}
	for _, meth := range m.Methods {
		if meth == "" || strings.ToUpper(meth) != meth || strings.ContainsFunc(meth, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return nil, fmt.Errorf("match.methods: %q is not an HTTP method in upper case", meth)
		}
		if meth == http.MethodConnect {
			return nil, fmt.Errorf("match.methods: CONNECT is not proxied")
		}
		if !slices.Contains(mt.methods, meth) {
			mt.methods = append(mt.methods, meth)
		}
	}
	return mt, nil
}

// canonicalSpecPath checks that a configured path is written in its
// canonical form, so that what the operator reads is what matches.
func canonicalSpecPath(field, p string) (string, error) {
	c, err := canonicalPath(p)
	if err != nil || p == "" {
		return "", fmt.Errorf("%s: %q is not a path: %v", field, p, err)
	}
	if c != p {
		return "", fmt.Errorf("%s: write %q as %q (paths are matched in canonical form)", field, p, c)
	}
	return c, nil
}

// parsePattern reads /literal/{name}/.../{rest...}.
func parsePattern(p string) ([]patSeg, error) {
	bad := func(why string) ([]patSeg, error) {
		return nil, fmt.Errorf("match.pathPattern: %q: %s", p, why)
	}
	if !strings.HasPrefix(p, "/") {
		return bad("must start with /")
	}
	var segs []patSeg
	names := map[string]bool{}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		if !strings.HasPrefix(s, "{") {
			if strings.ContainsAny(s, "{}") {
				return bad("a wildcard must be a whole segment")
			}
			if s == "" && i != len(parts)-1 {
				return bad("empty segment")
			}
			segs = append(segs, patSeg{lit: s})
			continue
		}
		if !strings.HasSuffix(s, "}") {
			return bad("a wildcard must be a whole segment")
		}
		name, rest := strings.CutSuffix(s[1:len(s)-1], "...")
		if !validName(name) {
			return bad("wildcard names are letters, digits and _")
		}
		if rest && i != len(parts)-1 {
			return bad("{" + name + "...} must be the last segment")
		}
		if names[name] {
			return bad("wildcard {" + name + "} appears twice")
		}
		names[name] = true
		segs = append(segs, patSeg{name: name, rest: rest})
	}
	var lit strings.Builder
	for _, s := range segs {
		if s.name == "" {
			lit.WriteString("/" + s.lit)
		}
	}
	if l := lit.String(); l != "" {
		if _, err := canonicalSpecPath("match.pathPattern", l); err != nil {
			return nil, err
		}
	}
	return segs, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// matchPath reports whether the canonical path p is the route's, with the
// wildcard values of a pattern (escaped, as in p) and the rest of a prefix.
func (m *matcher) matchPath(p string) (params map[string]string, rest string, ok bool) {
	switch m.kind {
	case matchExact:
		return nil, "", p == m.path
	case matchPrefix:
		if m.path == "" {
			return nil, p, true
		}
		if !strings.HasPrefix(p, m.path) || (len(p) > len(m.path) && p[len(m.path)] != '/') {
			return nil, "", false
		}
		return nil, p[len(m.path):], true
	}
	if !strings.HasPrefix(p, m.lead) {
		return nil, "", false
	}
	segs := strings.Split(p[1:], "/")
	for i, ps := range m.pattern {
		switch {
		case ps.rest:
			if params == nil {
				params = map[string]string{}
			}
			params[ps.name] = strings.Join(segs[min(i, len(segs)):], "/")
			return params, "", true
		case i >= len(segs):
			return nil, "", false
		case ps.name != "":
			if segs[i] == "" {
				return nil, "", false
			}
			if params == nil {
				params = map[string]string{}
			}
			params[ps.name] = segs[i]
		case ps.lit != segs[i]:
			return nil, "", false
		}
	}
	if len(segs) != len(m.pattern) {
		return nil, "", false
	}
	return params, "", true
}

// allows reports whether method may use the route; GET allows HEAD.
func (m *matcher) allows(method string) bool {
	return len(m.methods) == 0 || slices.Contains(m.methods, method) || (method == http.MethodHead && slices.Contains(m.methods, http.MethodGet))
}

// literalLen is how much of the path the route names literally: longer wins.
func (m *matcher) literalLen() int {
	if m.kind != matchPattern {
		return len(m.path)
	}
	n := 0
	for _, s := range m.pattern {
		if s.name != "" {
			break
		}
		n += 1 + len(s.lit)
	}
	return n
}

// hostMatch is a host a route names: exact, or "*.example.com" for any
// subdomain (not example.com itself); "" for any host.
type hostMatch string

func (h hostMatch) matches(host string) bool {
	switch {
	case h == "":
		return true
	case strings.HasPrefix(string(h), "*."):
		return strings.HasSuffix(host, string(h[1:])) && len(host) > len(h)-1
	}
	return string(h) == host
}

func (h hostMatch) score() int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(string(h), "*."):
		return 1
	}
	return 2
}

func parseHost(s string) (hostMatch, error) {
	h := strings.ToLower(s)
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.ContainsAny(name, "*/:@ ") || strings.HasSuffix(name, ".") || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("match.hosts: %q is not a host name (a wildcard is *.example.com)", s)
	}
	return hostMatch(h), nil
}

// entry is one route under one of its hosts; the table is sorted by
// specificity so that the first entry that matches wins.
type entry struct {
	host  hostMatch
	route *route
	order int
}

// table is an immutable set of routes, swapped whole on reload.
type table struct {
	entries []entry
	routes  []*route // in the order of the files
}

func newTable(routes []*route) *table {
	t := &table{routes: routes}
	for i, r := range routes {
		hosts := r.hosts
		if len(hosts) == 0 {
			hosts = []hostMatch{""}
		}
		for _, h := range hosts {
			t.entries = append(t.entries, entry{host: h, route: r, order: i})
		}
	}
	// The most specific route wins: a named host over a wildcard over any
	// host; then the longer literal path; then exact over pattern over
	// prefix; then the order of the files and of the routes in them.
	slices.SortStableFunc(t.entries, func(a, b entry) int {
		return cmp.Or(
			cmp.Compare(b.host.score(), a.host.score()),
			cmp.Compare(b.route.match.literalLen(), a.route.match.literalLen()),
			cmp.Compare(b.route.match.kind, a.route.match.kind),
			cmp.Compare(a.order, b.order),
		)
	})
	return t
}

// found is the route of a request and what the path told about it.
type found struct {
	route  *route
	params map[string]string
	rest   string
}

// lookup finds the route for host (canonical), path (canonical) and method;
// when routes match all but the method, allow lists their methods.
func (t *table) lookup(host, path, method string) (f found, allow []string) {
	for _, e := range t.entries {
		if !e.host.matches(host) {
			continue
		}
		params, rest, ok := e.route.match.matchPath(path)
		if !ok {
			continue
		}
		if !e.route.match.allows(method) {
			for _, m := range e.route.match.methods {
				if !slices.Contains(allow, m) {
					allow = append(allow, m)
				}
			}
			continue
		}
		return found{route: e.route, params: params, rest: rest}, nil
	}
	return found{}, allow
}
