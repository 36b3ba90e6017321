// Package gateway is thingid's identity gateway: a reverse proxy in front of
// upstream APIs, configured by a directory of route files, that runs each
// route's chain of filters (OAuth 2.0 resource server, UMA 2.0 resource
// server, throttling, headers) and also answers forward-auth requests from a
// trusted nginx, Traefik, Caddy or Envoy with the same filters. Forwarding
// headers count only from a trusted proxy (forwarded.go). It verifies tokens
// with internal/tokens and DPoP proofs with internal/dpop, and asks UMA
// permission tickets through Tickets; it never imports oauth or uma and
// never changes identities.
package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/httpstatus"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Certificates verifies a client certificate chain, leaf first
// (*certauth.Checker): a refusal wraps one of certauth's errors.
type Certificates interface {
	Verify(ctx context.Context, chain []*x509.Certificate) (*certauth.Identity, error)
}

// Things reads a thing, for the thing model of throttling keys
// (*principal.Service or store.Store).
type Things interface {
	GetThing(ctx context.Context, id string) (*store.Thing, error)
}

// Options configures New. RoutesDir, Audience, PublicURL, Verifier and
// Replay are required.
type Options struct {
	// RoutesDir holds the routes files, re-read when they change.
	RoutesDir string
	// Audience is the aud access tokens must carry (a route may name another).
	Audience string
	// PublicURL is the https origin clients use for routes that do not match
	// on a host: the origin their DPoP proofs name.
	PublicURL string
	Verifier  *tokens.Verifier
	// Issuer signs the short-lived tokens for upstreams (upstreamToken in a
	// route); nil refuses routes that ask for one.
	Issuer *tokens.Issuer
	// Bus delivers grant revocations (cached tokens are dropped at once) and
	// thing changes; nil for none.
	Bus *events.Bus
	// Replay remembers DPoP proofs across nodes (the store).
	Replay dpop.Replay
	// DPoPNonceKey, when set, makes DPoP proofs carry a server nonce (RFC 9449 §8).
	DPoPNonceKey []byte
	// Certificates verifies client certificates of mutual-TLS-bound tokens;
	// nil refuses such tokens.
	Certificates Certificates
	// Decider answers the policy filter; nil refuses routes that name it.
	Decider Decider
	// Things reads thing models for throttling; nil: the model is unknown.
	Things Things
	// UMA makes the uma filter available; nil refuses routes that name it.
	UMA *UMAOptions
	// Introspection asks about tokens that cannot be validated locally; nil
	// refuses them.
	Introspection *IntrospectionOptions
	// TokenCacheSize bounds the cache of validated tokens (default 65536; 0
	// means the default, -1 no cache).
	TokenCacheSize int
	// Redis keeps the throttling counters shared by several gateway nodes;
	// nil for counters in memory, bounded by MaxKeys (default 1,000,000).
	Redis   redis.UniversalClient
	MaxKeys int
	// TrustedProxies are the peers whose forwarding headers count (the
	// client's address, and at forward-auth the original request and the
	// client's certificate); every other peer's are removed on arrival, and
	// forward-auth refuses them.
	TrustedProxies []*net.IPNet
	// ForwardAuthPath serves the forward-auth endpoint; "" for none.
	ForwardAuthPath string
	// ForwardAuthProxy is the kind of proxy that asks forward-auth: the one
	// set of headers the original request is read from. Required with
	// ForwardAuthPath.
	ForwardAuthProxy ProxyKind
	// Transport reaches the upstreams; nil for one with UpstreamTimeout
	// (default 30 s) to the response headers.
	Transport       http.RoundTripper
	UpstreamTimeout time.Duration
	// Registerer receives the metrics; nil for none.
	Registerer prometheus.Registerer
	// Log receives the access log and errors; nil for slog.Default().
	Log *slog.Logger
	// Now is the clock of throttling and caches; nil for time.Now.
	Now func() time.Time
	// PollInterval is how often the routes directory is checked (default 1 s).
	PollInterval time.Duration
}

// Gateway serves the routes. It is an http.Handler, safe for concurrent use;
// Close it when done.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	tbl     atomic.Pointer[table]
	reload  sync.Mutex
	sum     [sha256.Size]byte // of the routes files in service; guarded by reload
	bad     [sha256.Size]byte // of the last files refused; guarded by reload
	badErr  error             // why; guarded by reload
	rp      *httputil.ReverseProxy
	dpop    *dpop.Verifier
	tokens  *tokenCache
	intro   *introspector
	models  *cache[string]
	minted  *cache[string]
	limiter limiter
	// umaChallenge starts every UMA challenge: scheme, realm and as_uri.
	umaChallenge string
	// limiterWarned is when a failure of the limiter was last logged (unix ns).
	limiterWarned atomic.Int64
	metrics       *metrics

	stop        context.CancelFunc
	done        chan struct{}
	unsubscribe func()
}

// New checks opts, loads the routes (a bad routes file is an error here) and
// starts following the directory and the bus until Close.
func New(opts Options) (*Gateway, error) {
	switch {
	case opts.RoutesDir == "", opts.Audience == "", opts.Verifier == nil, opts.Replay == nil:
		return nil, errors.New("gateway: RoutesDir, Audience, Verifier and Replay are required")
	case !strings.HasPrefix(opts.PublicURL, "https://") || strings.Count(opts.PublicURL, "/") != 2:
		return nil, fmt.Errorf("gateway: PublicURL %q must be an https origin", opts.PublicURL)
	case opts.ForwardAuthPath != "" && headerSets[opts.ForwardAuthProxy] == (headerSet{}):
		return nil, fmt.Errorf("gateway: ForwardAuthProxy %q: want one of %v", opts.ForwardAuthProxy, ProxyKinds)
	}
	opts.UpstreamTimeout = cmp.Or(opts.UpstreamTimeout, 30*time.Second)
	opts.PollInterval = cmp.Or(opts.PollInterval, time.Second)
	opts.MaxKeys = cmp.Or(opts.MaxKeys, 1_000_000)
	g := &Gateway{opts: opts, log: cmp.Or(opts.Log, slog.Default()), now: opts.Now, done: make(chan struct{})}
	if g.now == nil {
		g.now = time.Now
	}
	g.dpop = &dpop.Verifier{Replay: opts.Replay, NonceKey: opts.DPoPNonceKey, Now: g.now}
	g.tokens = newTokenCache(cmp.Or(opts.TokenCacheSize, 65536))
	if opts.Introspection != nil {
		in, err := newIntrospector(*opts.Introspection, g.now)
		if err != nil {
			return nil, err
		}
		g.intro = in
	}
	if opts.UMA != nil {
		ch, err := checkUMA(opts.UMA)
		if err != nil {
			return nil, err
		}
		g.umaChallenge = ch
	}
	g.models = newCache[string](16384)
	g.minted = newCache[string](cmp.Or(opts.TokenCacheSize, 65536))
	g.limiter = newMemoryLimiter(opts.MaxKeys)
	if opts.Redis != nil {
		g.limiter = &redisLimiter{rdb: opts.Redis}
	}
	g.metrics = newMetrics(opts.Registerer)
	g.rp = g.newReverseProxy()
	if err := g.Reload(); err != nil {
		return nil, err
	}
	g.unsubscribe = func() {}
	if opts.Bus != nil {
		g.unsubscribe = opts.Bus.Subscribe(g.event)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	go g.watch(ctx)
	return g, nil
}

// Close stops following the routes directory and the bus.
func (g *Gateway) Close() {
	g.stop()
	<-g.done
	g.unsubscribe()
}

// RouteInfo is a route in service, as people read it.
type RouteInfo struct {
	Name     string
	Hosts    []string // empty: any host
	Upstream string
}

// Routes returns the routes in service, in the order of their files, and
// why the routes files were refused when they changed since and are
// broken (nil otherwise): the routes in service stay until they are fixed.
func (g *Gateway) Routes() ([]RouteInfo, error) {
	g.reload.Lock()
	bad := g.badErr
	g.reload.Unlock()
	var out []RouteInfo
	if t := g.tbl.Load(); t != nil {
		for _, r := range t.routes {
			ri := RouteInfo{Name: r.name, Upstream: r.upstream.String()}
			for _, h := range r.hosts {
				ri.Hosts = append(ri.Hosts, string(h))
			}
			out = append(out, ri)
		}
	}
	return out, bad
}

// Reload reads the routes directory now and swaps the routes in; in-flight
// requests finish on the routes they started with. On error the routes in
// service stay.
func (g *Gateway) Reload() error {
	g.reload.Lock()
	defer g.reload.Unlock()
	sum, err := dirSum(g.opts.RoutesDir)
	switch {
	case err == nil && g.tbl.Load() != nil && sum == g.sum:
		return nil
	case err == nil && g.badErr != nil && sum == g.bad:
		return g.badErr // the same files as last time: no news
	}
	var routes []*route
	if err == nil {
		var specs []routeSpec
		var origin []string
		if specs, origin, err = readRoutes(g.opts.RoutesDir); err == nil {
			routes, err = g.compileRoutes(specs, origin)
		}
	}
	if err != nil {
		g.metrics.reloads.WithLabelValues("error").Inc()
		g.bad, g.badErr = sum, fmt.Errorf("gateway: %s: %w", g.opts.RoutesDir, err)
		return g.badErr
	}
	g.tbl.Store(newTable(routes))
	g.sum, g.badErr = sum, nil
	g.metrics.reloads.WithLabelValues("ok").Inc()
	g.metrics.routes.Set(float64(len(routes)))
	g.log.Info("gateway: routes loaded", "dir", g.opts.RoutesDir, "routes", len(routes))
	return nil
}

// watch polls the routes directory: portable, and cheap for a few small files.
func (g *Gateway) watch(ctx context.Context) {
	defer close(g.done)
	t := time.NewTicker(g.opts.PollInterval)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := g.Reload()
		if err != nil && (last == nil || err.Error() != last.Error()) {
			g.log.Error("gateway: routes not reloaded; the previous routes stay in service", "err", err)
		}
		last = err
	}
}

// dirSum hashes the names and contents of the routes files.
func dirSum(dir string) ([sha256.Size]byte, error) {
	h := sha256.New()
	names, err := routeFiles(dir)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("routes file %s: %w", n, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// event drops what the bus says is no longer true.
func (g *Gateway) event(e events.Event) {
	switch {
	case e.Type == tokens.EventGrantRevoke && e.ID != "":
		g.tokens.revoke(e.ID)
		g.minted.dropGrant(e.ID)
		if g.intro != nil {
			g.intro.cache.revoke(e.ID)
		}
	case e.Kind == "thing" && e.ID != "":
		g.models.delete(cacheKey("thing", e.ID))
	case e.Type == events.Resync:
		g.models.clear() // missed revocations come again as grant.revoke (tokens.Verifier)
	}
}

// exchange is what the gateway learns about one request as it passes the
// filters; it travels in the request's context.
type exchange struct {
	route *route
	found found
	// path is the canonical path; origin the scheme and host the client
	// addressed, which with the request's escaped path is the URL DPoP
	// proofs sign.
	path, origin string
	// id is what the access token says, once the oauth2 or uma filter
	// accepted it; perm, on a uma route, the RPT's permission that did.
	id   *principal
	perm *heldPermission
	// keepToken forwards the client's Authorization and DPoP headers.
	keepToken bool
	// upstreamToken is the signed token for the upstream, if the route wants one.
	upstreamToken string
	// certs is the client's certificate chain: the TLS connection's, or
	// the one a trusted proxy passed to forward-auth.
	certs []*x509.Certificate
	// trusted: the peer is a trusted proxy, whose forwarding headers the
	// request kept (admit).
	trusted bool
	// reason of a refusal; "" when the request passed.
	reason   string
	upstream time.Duration
	// w records the status of the answer; it lives here to save an
	// allocation per request.
	w httpstatus.Recorder
}

type exchangeKey struct{}

func exchangeOf(r *http.Request) *exchange {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return &exchange{} // a request that did not come through ServeHTTP
	}
	return x
}

// unmatched is the route of a request no route matched, in logs and in the
// route label of metrics, as on the HTTPS listener (internal/server); no
// route may be named so.
const unmatched = "unmatched"

// routeName names the request's route in logs and metrics.
func (x *exchange) routeName() string {
	if x.route == nil {
		return unmatched
	}
	return x.route.name
}

// ServeHTTP proxies r along its route, or answers the forward-auth endpoint.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{w: httpstatus.Recorder{ResponseWriter: w}}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	stripIdentity(r.Header)
	g.admit(r, x)
	if g.isForwardAuth(r) {
		g.forwardAuth(&x.w, r, x)
	} else {
		g.serveRoute(&x.w, r, x)
	}
	g.observe(r, x, x.w.Status(), time.Since(start))
}

func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, x *exchange) {
	if r.Method == http.MethodConnect || r.URL.Opaque != "" {
		x.reason = "bad_request"
		writeProblem(w, http.StatusBadRequest, "invalid_request", "the gateway proxies origin-form requests only")
		return
	}
	p, err := canonicalPath(r.URL.EscapedPath())
	if err != nil {
		x.reason = "bad_path"
		writeProblem(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	f, allow := g.tbl.Load().lookup(canonicalHost(r.Host), p, r.Method)
	if f.route == nil {
		x.reason = "no_route"
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, http.StatusMethodNotAllowed, "method_not_allowed", "the route does not serve "+r.Method)
			return
		}
		writeProblem(w, http.StatusNotFound, "no_route", "no route serves this path")
		return
	}
	x.route, x.found, x.path = f.route, f, p
	x.origin = g.requestOrigin(r, f.route)
	if r.TLS != nil {
		x.certs = r.TLS.PeerCertificates
	}
	f.route.proxy.ServeHTTP(w, r)
}

// requestOrigin is the origin the client addressed: the Host it sent on a
// route that matched on it, else the configured public URL (any other Host
// header is the client's to invent).
func (g *Gateway) requestOrigin(r *http.Request, rt *route) string {
	if len(rt.hosts) == 0 {
		return g.opts.PublicURL
	}
	scheme := "https://"
	if r.TLS == nil {
		scheme = "http://"
	}
	return scheme + r.Host
}

// observe writes the access log line and the metrics of a request.
func (g *Gateway) observe(r *http.Request, x *exchange, status int, took time.Duration) {
	decision := "allow"
	if x.reason != "" {
		decision = x.reason
	}
	var sub, client string
	if x.id != nil {
		sub, client = x.id.claims.Subject, x.id.claims.ClientID
	}
	g.metrics.observe(x, status, took)
	if !g.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "gateway",
		slog.String("route", x.routeName()),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.String("decision", decision),
		slog.String("subject", sub),
		slog.String("client", client),
		slog.String("ip", g.clientIP(r)),
		slog.Duration("latency", took),
		slog.Duration("upstream", x.upstream),
	)
}

// clientIP is the address of the client: the peer, or the first address a
// chain of trusted proxies names in X-Forwarded-For (right to left).
func (g *Gateway) clientIP(r *http.Request) string {
	host := peerHost(r)
	if !exchangeOf(r).trusted {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if net.ParseIP(h) == nil {
			break // a garbled hop: trust nothing left of it
		}
		if !g.trusted(h) {
			return h
		}
		host = h
	}
	return host
}

func (g *Gateway) trusted(host string) bool {
	if len(g.opts.TrustedProxies) == 0 {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range g.opts.TrustedProxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
