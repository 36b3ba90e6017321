package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// A routes file (*.yaml or *.yml in the routes directory) lists routes; see
// docs/gateway.md. Unknown fields are errors, and every error names the file,
// the route and the field.

type routesFile struct {
	Routes []routeSpec `json:"routes"`
}

type routeSpec struct {
	Name     string       `json:"name"`
	Match    matchSpec    `json:"match"`
	Upstream upstreamSpec `json:"upstream"`
	// Public must be said out loud for a route without the oauth2 or uma
	// filter.
	Public bool `json:"public"`
	// Filters run in order; each item is a filter name, or a one-key object
	// from the name to its configuration.
	Filters []json.RawMessage `json:"filters"`
}

type matchSpec struct {
	Hosts       []string `json:"hosts"`
	Path        string   `json:"path"`
	PathPrefix  string   `json:"pathPrefix"`
	PathPattern string   `json:"pathPattern"`
	Methods     []string `json:"methods"`
}

type upstreamSpec struct {
	URL string `json:"url"`
	// StripPrefix drops a pathPrefix route's prefix before the path is
	// joined to the URL's path.
	StripPrefix bool `json:"stripPrefix"`
	// Rewrite is the upstream path of a pathPattern route, with its
	// wildcards: /v2/things/{id}/{rest...}.
	Rewrite string `json:"rewrite"`
	// PreserveHost sends the client's Host header instead of the upstream's.
	PreserveHost bool `json:"preserveHost"`
}

// maxRoutesFile bounds a routes file.
const maxRoutesFile = 1 << 20

// parseRoutes reads one routes file.
func parseRoutes(data []byte) ([]routeSpec, error) {
	if len(data) > maxRoutesFile {
		return nil, fmt.Errorf("larger than %d bytes", maxRoutesFile)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, nil // an empty file
	}
	var f routesFile
	if err := decodeStrict(j, &f); err != nil {
		return nil, err
	}
	return f.Routes, nil
}

// decodeStrict decodes JSON into v, refusing unknown fields and trailing data.
func decodeStrict(j []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("field %s: want %s, got %s", te.Field, te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// filterSpec splits a filters item into its name and configuration.
func filterSpec(raw json.RawMessage) (string, json.RawMessage, error) {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return name, nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) != 1 {
		return "", nil, errors.New("want a filter name, or one filter name mapped to its configuration")
	}
	for k, v := range m {
		return k, v, nil
	}
	return "", nil, nil // unreachable: m has one key
}

// readRoutes reads every routes file of dir in lexical order; a missing
// directory has no routes.
func readRoutes(dir string) ([]routeSpec, []string, error) {
	names, err := routeFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	var specs []routeSpec
	var origin []string
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, nil, fmt.Errorf("routes file %s: %w", n, err)
		}
		rs, err := parseRoutes(data)
		if err != nil {
			return nil, nil, fmt.Errorf("routes file %s: %w", n, err)
		}
		for range rs {
			origin = append(origin, n)
		}
		specs = append(specs, rs...)
	}
	return specs, origin, nil
}

// routeFiles lists the routes files of dir, sorted.
func routeFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("routes directory: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// route is a compiled route.
type route struct {
	name     string
	hosts    []hostMatch
	match    *matcher
	upstream *url.URL
	// base is the upstream URL's escaped path without its trailing slash.
	base         string
	stripPrefix  bool
	rewrite      []patSeg
	preserveHost bool
	filters      []Filter
	// proxy and auth are the filter chain ending in the reverse proxy, and
	// in the forward-auth answer.
	proxy, auth http.Handler
	metrics     *routeMetrics
}

// compileRoutes checks specs and builds the routes; origin names each spec's file.
func (g *Gateway) compileRoutes(specs []routeSpec, origin []string) ([]*route, error) {
	seen := map[string]string{}
	routes := make([]*route, 0, len(specs))
	for i, s := range specs {
		where := fmt.Sprintf("routes file %s: route %d", origin[i], i+1)
		if s.Name != "" {
			where = fmt.Sprintf("routes file %s: route %s", origin[i], s.Name)
		}
		if prev, dup := seen[s.Name]; dup {
			return nil, fmt.Errorf("%s: name already used in %s", where, prev)
		}
		seen[s.Name] = origin[i]
		r, err := g.compileRoute(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		routes = append(routes, r)
	}
	return routes, nil
}

func (g *Gateway) compileRoute(s routeSpec) (*route, error) {
	if !validRouteName(s.Name) {
		return nil, errors.New("name: required; letters, digits, '.', '_' and '-' (it names metrics and RateLimit policies)")
	}
	if s.Name == unmatched {
		return nil, fmt.Errorf("name: %q is reserved: it labels the requests no route matches", unmatched)
	}
	m, err := newMatcher(s.Match)
	if err != nil {
		return nil, err
	}
	r := &route{name: s.Name, match: m, stripPrefix: s.Upstream.StripPrefix, preserveHost: s.Upstream.PreserveHost}
	for _, h := range s.Match.Hosts {
		hm, err := parseHost(h)
		if err != nil {
			return nil, err
		}
		r.hosts = append(r.hosts, hm)
	}
	if err := r.setUpstream(s.Upstream); err != nil {
		return nil, err
	}
	var hasAuth bool
	for i, raw := range s.Filters {
		name, cfg, err := filterSpec(raw)
		if err != nil {
			return nil, fmt.Errorf("filters[%d]: %w", i, err)
		}
		mk, ok := filterFactories[name]
		if !ok {
			return nil, fmt.Errorf("filters[%d]: unknown filter %q (known: %s)", i, name, strings.Join(filterNames(), ", "))
		}
		f, err := mk(g, r, cfg, hasAuth)
		if err != nil {
			return nil, fmt.Errorf("filters[%d] %s: %w", i, name, err)
		}
		if authenticates(f) {
			if hasAuth {
				return nil, fmt.Errorf("filters[%d]: %s: a route authenticates once (oauth2 or uma appears twice)", i, name)
			}
			hasAuth = true
		}
		r.filters = append(r.filters, f)
	}
	if hasAuth == s.Public {
		if s.Public {
			return nil, errors.New("public: a public route cannot have the oauth2 or uma filter")
		}
		return nil, errors.New("filters: no oauth2 or uma filter; add one, or set public: true to serve this route without a token")
	}
	r.metrics = g.metrics.route(r.name)
	r.proxy = chain(g, r.filters, http.HandlerFunc(g.proxy))
	r.auth = chain(g, r.filters, http.HandlerFunc(g.authOK))
	return r, nil
}

// setUpstream checks the upstream section against the match.
func (r *route) setUpstream(u upstreamSpec) error {
	t, err := url.Parse(u.URL)
	if err != nil || (t.Scheme != "http" && t.Scheme != "https") || t.Host == "" || t.User != nil || t.RawQuery != "" || t.ForceQuery || t.Fragment != "" {
		return fmt.Errorf("upstream.url: %q must be an http(s) URL without user, query or fragment", u.URL)
	}
	if t.EscapedPath() != "" {
		base, err := canonicalSpecPath("upstream.url path", t.EscapedPath())
		if err != nil {
			return err
		}
		r.base = strings.TrimSuffix(base, "/")
	}
	r.upstream = &url.URL{Scheme: t.Scheme, Host: t.Host}
	if u.StripPrefix && r.match.kind != matchPrefix {
		return errors.New("upstream.stripPrefix: only with match.pathPrefix")
	}
	if u.Rewrite != "" {
		if r.match.kind != matchPattern {
			return errors.New("upstream.rewrite: only with match.pathPattern")
		}
		segs, err := parsePattern(u.Rewrite)
		if err != nil {
			return fmt.Errorf("upstream.rewrite: %w", err)
		}
		for _, s := range segs {
			if s.name == "" {
				continue
			}
			i := slices.IndexFunc(r.match.pattern, func(p patSeg) bool { return p.name == s.name })
			if i < 0 || r.match.pattern[i].rest != s.rest {
				return fmt.Errorf("upstream.rewrite: {%s} is not a wildcard of match.pathPattern (with the same ...)", s.name)
			}
		}
		r.rewrite = segs
	}
	return nil
}

// upstreamPath is the escaped path the upstream receives for a request
// whose canonical path is p.
func (r *route) upstreamPath(p string, f found) string {
	switch {
	case r.rewrite != nil:
		var b strings.Builder
		for _, s := range r.rewrite {
			b.WriteByte('/')
			if s.name == "" {
				b.WriteString(s.lit)
			} else {
				b.WriteString(f.params[s.name])
			}
		}
		p = b.String()
	case r.stripPrefix:
		p = f.rest
	}
	switch {
	case p == "" && r.base == "":
		return "/"
	case p == "":
		return r.base
	}
	return r.base + p
}

func validRouteName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '.' || c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
