// Package coapgw is the CoAP gateway (RFC 7252, docs/coap.md): constrained
// things reach the platform over DTLS 1.2 with their factory certificate,
// decided by certauth exactly as mutual TLS on HTTPS decides it. A plain
// UDP listener, bound to loopback only, serves local tools.
//
// The gateway's resources are a table (Resource): the device API is mounted
// here, and other packages add theirs (ACE's /authz-info and /token) by
// passing a Handler in Options.Resources.
package coapgw

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Verifier decides what a client certificate chain (leaf first) proves:
// certauth.Checker.
type Verifier interface {
	Verify(ctx context.Context, chain []*x509.Certificate) (*certauth.Identity, error)
}

// Session is an authenticated DTLS session: the thing its certificate or
// its pre-shared key names.
type Session struct {
	Thing *store.Thing // as it was at the handshake
	// Fingerprint is the lower-case hex SHA-256 of the certificate's DER,
	// as certauth's revocation events name it; empty for a PSK session.
	Fingerprint string
	// Chain is the client's certificate chain, leaf first, as certauth
	// accepted it; nil for a PSK session.
	Chain []*x509.Certificate
	// PSKIdentity is the PSK identity of a PSK session ("<thing id>.<key
	// id>", internal/psk); empty for a certificate session.
	PSKIdentity string
	thingID     string // Thing's id, known before Thing is read
	self        []byte // call home's answer (selfOf Thing)
	pskKeyID    string
	conn        *udpClient.Conn
	expiry      *time.Timer // nil for a PSK session
}

// Handler serves one resource. s is nil for a request on the loopback UDP
// listener, which proves no identity.
type Handler interface {
	ServeCoAP(w mux.ResponseWriter, r *mux.Message, s *Session)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w mux.ResponseWriter, r *mux.Message, s *Session)

// ServeCoAP calls f.
func (f HandlerFunc) ServeCoAP(w mux.ResponseWriter, r *mux.Message, s *Session) { f(w, r, s) }

// Resource is one entry of the gateway's resource table.
type Resource struct {
	Path    string // "/self"
	Handler Handler
}

// Options configures a Gateway. DTLSAddress, Certificate and Verifier are
// required.
type Options struct {
	DTLSAddress string // "0.0.0.0:5684"
	// UDPAddress serves CoAP without DTLS for local tools; a loopback
	// address (config refuses any other). Empty: not served.
	UDPAddress  string
	Certificate tls.Certificate // the server's, as on HTTPS
	Verifier    Verifier
	Bus         *events.Bus // revocations end sessions; nil: none followed
	// MaxSessions bounds the DTLS sessions held at once; a handshake past it
	// is refused.
	MaxSessions int
	// HandshakeTimeout bounds one DTLS handshake.
	HandshakeTimeout time.Duration
	// HandshakesPerSecond and HandshakeBurst bound the new DTLS
	// associations of one address; 0: 5 per second, bursts of 20.
	HandshakesPerSecond float64
	HandshakeBurst      int
	// PSKs finds things' pre-shared keys (psk.Keys); nil: no PSK suite is
	// offered.
	PSKs PSKs
	// Publisher takes what things post to /mqtt/TOPIC (the broker); nil:
	// that resource is not served.
	Publisher Publisher
	// Subscriber lets things observe broker topics and read their retained
	// messages (GET /mqtt/TOPIC, observe.go): the broker; nil: not served.
	Subscriber Subscriber
	// MaxObservers and ObserversPerSession bound the observations held in
	// all and by one session; 0: 10000 and 8.
	MaxObservers, ObserversPerSession int
	// MaxBody bounds a request's body, block-wise transfers included
	// (blockwise.go); 0: 256 KiB.
	MaxBody int
	// BlockTransfers bounds the unfinished block-wise request transfers of
	// one session, BlockTimeout how long one may take; 0: 4 and 30s.
	BlockTransfers int
	BlockTimeout   time.Duration
	// Resources are mounted besides the device API's.
	Resources []Resource
	// AuthzInfo verifies the access tokens posted to /authz-info (authz.go);
	// nil: that resource is not served.
	AuthzInfo  AuthzInfoFunc
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Gateway serves CoAP; Close it when done.
type Gateway struct {
	opts    Options
	metrics *metrics

	mu       sync.RWMutex // every request reads sessions
	sessions map[*udpClient.Conn]*Session

	tokens      heldTokens         // authz.go
	pskFound    pskLookups         // psk.go
	observers   *observers         // observe.go
	bodyRefused prometheus.Counter // blockwise.go

	dtls      *dtlsServer.Server
	udp       *udpServer.Server
	dtlsLn    *coapnet.DTLSListener
	udpLn     *coapnet.UDPConn
	wg        sync.WaitGroup
	stopEvent func()
	closeOnce sync.Once
}

// ErrTooManySessions refuses a handshake past Options.MaxSessions.
var ErrTooManySessions = errors.New("coapgw: too many DTLS sessions")

// New listens on the configured addresses and serves until Close.
func New(opts Options) (*Gateway, error) {
	if opts.DTLSAddress == "" || opts.Verifier == nil || len(opts.Certificate.Certificate) == 0 {
		return nil, errors.New("coapgw: DTLSAddress, Certificate and Verifier are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10000
	}
	if opts.HandshakesPerSecond <= 0 {
		opts.HandshakesPerSecond = 5
	}
	if opts.HandshakeBurst <= 0 {
		opts.HandshakeBurst = 20
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	opts.MaxObservers = cmp.Or(max(opts.MaxObservers, 0), 10000)
	opts.ObserversPerSession = cmp.Or(max(opts.ObserversPerSession, 0), 8)
	opts.MaxBody = cmp.Or(max(opts.MaxBody, 0), 256<<10)
	opts.BlockTransfers = cmp.Or(max(opts.BlockTransfers, 0), 4)
	opts.BlockTimeout = cmp.Or(max(opts.BlockTimeout, 0), 30*time.Second)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	g := &Gateway{opts: opts, metrics: m, sessions: map[*udpClient.Conn]*Session{}}
	if g.observers, err = newObservers(opts); err != nil {
		return nil, err
	}
	if g.bodyRefused, err = newBodyRefused(opts.Registerer); err != nil {
		return nil, err
	}
	router, err := g.router()
	if err != nil {
		return nil, err
	}
	cfg := &piondtls.Config{
		Certificates:         []tls.Certificate{opts.Certificate},
		CipherSuites:         g.cipherSuites(),
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		ClientAuth:           piondtls.RequireAnyClientCert, // certauth decides, not the handshake
		VerifyConnection:     g.verifyConnection,
		// RFC 9146: a thing behind a NAT keeps its session when its
		// address changes.
		ConnectionIDGenerator: piondtls.RandomCIDGenerator(8),
		// The cookie exchange (HelloVerifyRequest) is pion's default: a
		// spoofed source gets one small answer and no state.
	}
	if opts.PSKs != nil {
		cfg.PSK = g.pskKey
	}
	g.dtlsLn, err = coapnet.NewDTLSListener("udp", opts.DTLSAddress, cfg)
	if err != nil {
		return nil, fmt.Errorf("coapgw: DTLS on %s: %w", opts.DTLSAddress, err)
	}
	bw := g.blockwise()
	g.dtls = dtls.NewServer(options.WithMux(router), options.WithOnNewConn(g.onNewConn),
		options.WithDTLSHandshakeTimeout(opts.HandshakeTimeout), options.WithErrors(g.transportError),
		bw.enable, bw.transfers, bw.monitor)
	limited := &handshakeLimit{Listener: g.dtlsLn, perSecond: rate.Limit(opts.HandshakesPerSecond), burst: opts.HandshakeBurst,
		buckets: map[netip.Addr]*rate.Limiter{}, refused: func(a net.Addr) {
			g.metrics.handshakes.WithLabelValues("rate_limited").Inc()
			opts.Log.Info("coapgw: handshake rate exceeded", "remote", a.String())
		}}
	g.serve(func() error { return g.dtls.Serve(wired{limited}) })
	if opts.UDPAddress != "" {
		g.udpLn, err = coapnet.NewListenUDP("udp", opts.UDPAddress)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("coapgw: UDP on %s: %w", opts.UDPAddress, err)
		}
		g.udp = udp.NewServer(options.WithMux(router), options.WithErrors(g.transportError), bw.enable, bw.transfers, bw.monitor)
		g.serve(func() error { return g.udp.Serve(g.udpLn) })
	}
	if opts.Bus != nil {
		g.stopEvent = opts.Bus.Subscribe(g.onEvent)
	}
	return g, nil
}

// transportError logs what go-coap reports of a peer: failed handshakes,
// unreadable datagrams.
func (g *Gateway) transportError(err error) {
	g.opts.Log.Debug("coapgw: transport", "err", err)
}

func (g *Gateway) serve(run func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := run(); err != nil {
			g.opts.Log.Error("coapgw: listener stopped", "err", err)
		}
	}()
}

// DTLSAddr is the DTLS listener's address.
func (g *Gateway) DTLSAddr() net.Addr { return g.dtlsLn.Addr() }

// UDPAddr is the loopback UDP listener's address, nil when not served.
func (g *Gateway) UDPAddr() net.Addr {
	if g.udpLn == nil {
		return nil
	}
	return g.udpLn.LocalAddr()
}

// Close stops the listeners and ends every session; later calls do nothing.
func (g *Gateway) Close() { g.closeOnce.Do(g.close) }

func (g *Gateway) close() {
	if g.stopEvent != nil {
		g.stopEvent()
	}
	if g.dtls != nil {
		g.dtls.Stop()
	}
	if g.udp != nil {
		g.udp.Stop()
	}
	g.wg.Wait()
	g.mu.Lock()
	open := make([]*Session, 0, len(g.sessions))
	for _, s := range g.sessions {
		open = append(open, s)
	}
	g.mu.Unlock()
	// Outside the lock: a closing session removes itself.
	for _, s := range open {
		s.conn.Close()
	}
}

// identify is what a DTLS peer's certificate proves, as certauth decides.
func (g *Gateway) identify(ctx context.Context, raw [][]byte) (*certauth.Identity, []*x509.Certificate, error) {
	chain := make([]*x509.Certificate, 0, len(raw))
	for _, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", certauth.ErrNoCertificate, err)
		}
		chain = append(chain, c)
	}
	id, err := g.opts.Verifier.Verify(ctx, chain)
	return id, chain, err
}

// verifyConnection refuses, during the handshake, a certificate certauth
// refuses and a session past the bound. A PSK handshake's identity was
// decided by the PSK callback.
func (g *Gateway) verifyConnection(st *piondtls.State) error {
	g.mu.Lock()
	full := len(g.sessions) >= g.opts.MaxSessions
	g.mu.Unlock()
	if full {
		g.metrics.handshakes.WithLabelValues("too_many_sessions").Inc()
		return ErrTooManySessions
	}
	if isPSK(st) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.HandshakeTimeout)
	defer cancel()
	if _, _, err := g.identify(ctx, st.PeerCertificates); err != nil {
		g.refused(err)
		return err
	}
	return nil
}

func (g *Gateway) refused(err error) {
	if certauth.Refused(err) {
		g.metrics.handshakes.WithLabelValues("refused").Inc()
		g.opts.Log.Info("coapgw: certificate refused", "err", err)
		return
	}
	g.metrics.handshakes.WithLabelValues("error").Inc()
	g.opts.Log.Error("coapgw: certificate check failed", "err", err)
}

// onNewConn records the session of a completed handshake.
func (g *Gateway) onNewConn(cc *udpClient.Conn) {
	dc, ok := cc.NetConn().(*wire)
	if !ok {
		cc.Close()
		return
	}
	st, ok := dc.ConnectionState()
	if ok && isPSK(&st) {
		g.pskSession(cc, st.IdentityHint)
		return
	}
	if !ok || len(st.PeerCertificates) == 0 {
		cc.Close()
		return
	}
	id, chain, err := g.identify(cc.Context(), st.PeerCertificates)
	if err != nil { // revoked or disabled between the check and now
		g.refused(err)
		cc.Close()
		return
	}
	fp := sha256.Sum256(id.Leaf.Raw)
	s := &Session{Thing: id.Thing, thingID: id.Thing.ID, self: selfOf(id.Thing), Fingerprint: hex.EncodeToString(fp[:]), Chain: chain, conn: cc}
	// An expired certificate ends its session at its notAfter.
	s.expiry = time.AfterFunc(id.Leaf.NotAfter.Sub(g.opts.Now()), func() { g.end(s, "certificate_expired") })
	g.register(s)
	g.metrics.handshakes.WithLabelValues("ok").Inc()
	g.opts.Log.Info("coapgw: session", "thing", id.Thing.ID, "authority", id.Authority, "remote", cc.RemoteAddr().String())
}

// register records s until its connection closes.
func (g *Gateway) register(s *Session) {
	g.mu.Lock()
	g.sessions[s.conn] = s
	g.mu.Unlock()
	s.conn.AddOnClose(func() {
		if s.expiry != nil {
			s.expiry.Stop()
		}
		g.mu.Lock()
		delete(g.sessions, s.conn)
		g.mu.Unlock()
		g.metrics.sessions.Dec()
	})
	g.metrics.sessions.Inc()
}

func (g *Gateway) session(cc mux.Conn) *Session {
	c, ok := cc.(*udpClient.Conn)
	if !ok {
		return nil
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.sessions[c]
}

// end closes a session for reason.
func (g *Gateway) end(s *Session, reason string) {
	g.metrics.ended.WithLabelValues(reason).Inc()
	g.opts.Log.Info("coapgw: session ended", "thing", s.thingID, "reason", reason)
	s.conn.Close()
}

// onEvent ends the sessions a revocation concerns: the thing disabled,
// deleted or unlinked from its owner, its certificate revoked, its
// pre-shared key re-issued, a token it posted to /authz-info revoked.
func (g *Gateway) onEvent(e events.Event) {
	var reason string
	match := func(s *Session) bool { return s.thingID == e.ID }
	switch e.Type {
	case "thing.disable", "thing.delete":
		reason = "thing_disabled"
	case "relationship.remove":
		if e.Details["relation"] != string(store.RelOwner) || e.Details["fromKind"] != string(store.KindUser) {
			return
		}
		reason = "owner_unlinked"
	case identity.EventPSKReissue:
		reason = "psk_reissued"
		match = func(s *Session) bool {
			return s.thingID == e.ID && s.PSKIdentity != "" && s.pskKeyID != e.Details["keyId"]
		}
	case ace.EventRevoke, tokens.EventGrantRevoke:
		g.onTokenRevoke(e)
		return
	case certauth.EventCertRevoke:
		reason = "certificate_revoked"
		match = func(s *Session) bool { return s.Fingerprint == e.Details["fingerprint"] }
	case events.Resync:
		g.pskFound.changed("") // events may have been missed: every PSK handshake in flight is closed
		return
	default:
		return
	}
	// Counted before the sessions are looked at: a PSK session recorded
	// after this look finds the count changed (pskSession).
	g.pskFound.changed(e.ID)
	g.mu.Lock()
	var doomed []*Session
	for _, s := range g.sessions {
		if match(s) {
			doomed = append(doomed, s)
		}
	}
	g.mu.Unlock()
	for _, s := range doomed {
		g.end(s, reason)
	}
}

// router is the resource table: the device API, then Options.Resources.
func (g *Gateway) router() (*mux.Router, error) {
	r := mux.NewRouter()
	r.Use(ignoreResets)
	table := []Resource{{Path: PathSelf, Handler: HandlerFunc(serveSelf)}}
	if g.opts.Publisher != nil || g.opts.Subscriber != nil {
		table = append(table, Resource{Path: PathMQTT + "/{topic:.+}", Handler: g.mqttResource()})
	}
	if g.opts.AuthzInfo != nil {
		table = append(table, Resource{Path: PathAuthzInfo, Handler: g.authzInfo(g.opts.AuthzInfo)})
	}
	table = append(table, g.opts.Resources...)
	for _, res := range table {
		h, requests := res.Handler, g.metrics.requests.WithLabelValues(res.Path)
		err := r.Handle(res.Path, mux.HandlerFunc(func(w mux.ResponseWriter, m *mux.Message) {
			requests.Inc()
			s := g.session(w.Conn())
			if s != nil {
				m.SetContext(g.tokens.withScopes(m.Context(), s))
			}
			h.ServeCoAP(w, m, s)
		}))
		if err != nil {
			return nil, fmt.Errorf("coapgw: resource %q: %w", res.Path, err)
		}
	}
	unknown := g.metrics.requests.WithLabelValues("unknown")
	r.DefaultHandle(mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		unknown.Inc()
		// An empty 4.04: never larger than the request that asked.
		_ = w.SetResponse(codes.NotFound, 0, nil)
	}))
	return r, nil
}
