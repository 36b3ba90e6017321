package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/thingid/thingid/internal/refusal"
)

// forwardAuth is the endpoint a web server asks before serving a request
// itself (nginx auth_request, Traefik ForwardAuth, Caddy forward_auth, Envoy
// ext_authz): the original request is described by headers, matched against
// the routes and put through the route's filters; the answer is 200 with the
// identity headers, or the filters' 401/403/429. A request no route serves is
// 403: only what a route allows passes.
//
// Only a proxy in Options.TrustedProxies is answered (anyone else could
// describe whatever request suits them), and only in the headers of its kind,
// Options.ForwardAuthProxy (see readOriginal).
func (g *Gateway) forwardAuth(w http.ResponseWriter, r *http.Request, x *exchange) {
	deny := func(status int, code, reason, detail string) {
		x.reason = reason
		writeProblem(w, status, code, detail)
	}
	if !x.trusted {
		deny(http.StatusForbidden, "untrusted_proxy", "untrusted_proxy",
			"forward-auth answers only the proxy in front of the gateway, and "+peerHost(r)+
				" is not in gateway.trustedProxies: set gateway.trustedProxies to the address of the nginx, Traefik, Caddy or Envoy that asks")
		return
	}
	o, err := readOriginal(g.opts.ForwardAuthProxy, r, g.opts.ForwardAuthPath)
	if err != nil {
		var he *refusal.FieldError
		if !errors.As(err, &he) {
			g.log.Error("gateway: forward-auth", "err", err)
		}
		deny(http.StatusBadRequest, "invalid_request", "bad_request", "forward-auth: "+err.Error())
		return
	}
	u, _ := url.ParseRequestURI(o.uri) // checked by readOriginal
	p, err := canonicalPath(u.EscapedPath())
	if err != nil {
		deny(http.StatusForbidden, "invalid_request", "bad_path", err.Error())
		return
	}
	f, _ := g.tbl.Load().lookup(canonicalHost(o.host), p, o.method)
	if f.route == nil {
		deny(http.StatusForbidden, "no_route", "no_route", "no route allows this request")
		return
	}
	orig := r.Clone(r.Context())
	orig.Method, orig.URL, orig.Host, orig.RequestURI = o.method, u, o.host, o.uri
	x.route, x.found, x.path = f.route, f, p
	// The proxy in front knows its names (nginx server_name, Traefik rules):
	// the forwarded origin is what DPoP proofs sign.
	x.origin = o.proto + "://" + o.host
	x.certs = o.certs
	f.route.auth.ServeHTTP(w, orig)
}

// isForwardAuth tells whether r asks the forward-auth endpoint: its path, or
// for Envoy, whose ext_authz appends the original path to its path_prefix,
// anything under it.
func (g *Gateway) isForwardAuth(r *http.Request) bool {
	p := g.opts.ForwardAuthPath
	if p == "" {
		return false
	}
	if g.opts.ForwardAuthProxy == ProxyEnvoy {
		return r.URL.Path == p || strings.HasPrefix(r.URL.Path, p+"/") || strings.HasPrefix(r.RequestURI, p+"/")
	}
	return r.URL.Path == p
}
