package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// Identity headers: what the gateway tells the upstream (or, for
// forward-auth, the proxy) about the request's token. Any header of this
// family that the client sent is removed first.
const (
	HeaderSubject = "X-Thingid-Subject"
	HeaderThing   = "X-Thingid-Thing"
	HeaderClient  = "X-Thingid-Client"
	HeaderScope   = "X-Thingid-Scope"
	// HeaderToken carries the short-lived token signed for the upstream.
	HeaderToken = "X-Thingid-Token"
	// HeaderResource and HeaderResourceScopes, on uma routes: the
	// request's resource and the scopes the RPT grants on it.
	HeaderResource       = "X-Thingid-Resource"
	HeaderResourceScopes = "X-Thingid-Resource-Scopes"
)

// stripIdentity removes every header the client sent in the X-Thingid-
// family, also when spelled with underscores, which some upstreams (CGI,
// WSGI) read as the same name.
func stripIdentity(h http.Header) {
	for k := range h {
		if len(k) >= 10 && strings.EqualFold(strings.ReplaceAll(k[:10], "_", "-"), "x-thingid-") {
			delete(h, k)
		}
	}
}

// setIdentity writes the identity headers of x into h.
func setIdentity(h http.Header, x *exchange) {
	if id := x.id; id != nil {
		h[HeaderSubject], h[HeaderClient], h[HeaderScope] = id.subject, id.client, id.scope
		if id.thing != nil {
			h[HeaderThing] = id.thing
		}
	}
	if x.upstreamToken != "" {
		h.Set(HeaderToken, x.upstreamToken)
	}
	if p := x.perm; p != nil {
		h[HeaderResource], h[HeaderResourceScopes] = p.resource, p.scopes
	}
}

// newReverseProxy is the one proxy of all routes: each request carries its
// route in its exchange, and all share the upstream connection pools, which
// survive route reloads.
func (g *Gateway) newReverseProxy() *httputil.ReverseProxy {
	tr := g.opts.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = g.opts.UpstreamTimeout
		// A proxy talks to few hosts, a lot: keep connections to reuse.
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		// The client's Accept-Encoding goes through as it is; the proxy
		// neither asks for gzip nor unpacks it.
		t.DisableCompression = true
		tr = t
	}
	return &httputil.ReverseProxy{
		Rewrite:      g.rewrite,
		Transport:    timedTransport{tr},
		ErrorHandler: g.upstreamError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BufferPool:   bufferPool{},
	}
}

// bufferPool reuses the buffers that copy response bodies: without it every
// request allocates 32 KiB, which is most of the gateway's garbage.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// proxy is the last handler of a route's chain.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request) { g.rp.ServeHTTP(w, r) }

// rewrite sends the request to the route's upstream, on the canonical path
// the route was chosen by, rewritten as the route says.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In)
	rt := x.route
	out := pr.Out
	out.URL.Scheme, out.URL.Host = rt.upstream.Scheme, rt.upstream.Host
	esc := rt.upstreamPath(x.path, x.found)
	out.URL.Path = unescapePath(esc)
	out.URL.RawPath = ""
	if out.URL.Path != esc {
		out.URL.RawPath = esc
	}
	out.URL.RawQuery = pr.In.URL.RawQuery
	if !rt.preserveHost {
		out.Host = ""
	}
	// Rewrite starts without X-Forwarded-*: keep the chain of a trusted proxy
	// (admit removed any other's).
	if x.trusted {
		if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
			out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetXForwarded()
	if x.id != nil && !x.keepToken {
		// The token is the gateway's (its audience); the upstream gets the
		// identity headers and, if the route wants, a token of its own.
		out.Header.Del("Authorization")
		out.Header.Del("DPoP")
	}
	setIdentity(out.Header, x)
}

func peerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// upstreamError answers a failed upstream: 504 on a timeout, else 502.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r)
	x.reason = "upstream_error"
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		x.reason = "client_gone"
		w.WriteHeader(499) // nginx's "client closed request", for the log; nobody reads it
		return
	}
	g.log.Warn("gateway: upstream failed", "route", x.routeName(), "upstream", x.route.upstream.Host, "err", err)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		writeProblem(w, http.StatusGatewayTimeout, "upstream_timeout", "the upstream did not answer in time")
		return
	}
	writeProblem(w, http.StatusBadGateway, "upstream_unavailable", "the upstream could not be reached")
}

// timedTransport records how long the upstream took to answer (headers).
type timedTransport struct{ base http.RoundTripper }

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	exchangeOf(r).upstream = time.Since(start)
	return resp, err
}

// identityHeaders are every header setIdentity may write.
var identityHeaders = []string{HeaderSubject, HeaderThing, HeaderClient, HeaderScope, HeaderToken, HeaderResource, HeaderResourceScopes}

// authOK is the last handler of a route's chain at the forward-auth
// endpoint: 200 with the identity headers for the proxy to pass on. Every
// identity header is in the answer, empty when the request has no such
// identity: a proxy that copies the answer's headers onto the request (Envoy,
// Caddy's copy_headers) then overwrites whatever the client sent under those
// names instead of letting it through.
func (g *Gateway) authOK(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for _, k := range identityHeaders {
		h[k] = []string{""}
	}
	setIdentity(h, exchangeOf(r))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
