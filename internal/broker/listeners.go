package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/netlimit"
)

// Listener kinds.
const (
	ListenerTCP       = "tcp"       // MQTT over TCP, with TLS when Listener.TLS is set
	ListenerWebSocket = "websocket" // MQTT over WebSocket (RFC 6455, subprotocol "mqtt"), wss when TLS is set
)

// WebSocketPath is where the WebSocket listener accepts MQTT connections.
const WebSocketPath = "/mqtt"

// Listener is one network endpoint of the broker.
type Listener struct {
	Name    string // names the listener in logs, metrics and the admin API ("tls", "websocket", "tcp")
	Kind    string // ListenerTCP or ListenerWebSocket
	Address string
	// TLS serves TLS with this configuration; client certificates are
	// requested, never required, and checked by the broker, not the handshake.
	TLS *tls.Config
	// Anonymous lets clients without credentials in, with the anonymous rules.
	Anonymous bool
	// AllowedOrigins are the browser origins ("https://app.example.com") a
	// WebSocket upgrade may come from; a request with another Origin is
	// refused (403). Clients that send no Origin (not browsers) are let in.
	AllowedOrigins []string
}

// netListener accepts connections for the core (mqtt.Server.ServeConn): it
// gives a client a deadline to finish the TLS handshake and send CONNECT,
// survives transient Accept errors such as running out of file descriptors,
// and refuses WebSocket upgrades from origins that are not configured.
type netListener struct {
	cfg     Listener
	ln      net.Listener
	timeout time.Duration // to finish the handshake and CONNECT
	log     *slog.Logger
	closed  atomic.Bool
	http    *http.Server // WebSocket only

	// The connections being served, so that Broker.Close can end those
	// still in their handshake (not yet the core's) and wait for them.
	mu       sync.Mutex
	draining bool
	conns    map[net.Conn]struct{}
	active   sync.WaitGroup
}

// track records conn as served; false (conn closed) once draining began.
func (l *netListener) track(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.draining {
		conn.Close()
		return false
	}
	if l.conns == nil {
		l.conns = map[net.Conn]struct{}{}
	}
	l.conns[conn] = struct{}{}
	l.active.Add(1)
	return true
}

func (l *netListener) untrack(conn net.Conn) {
	l.mu.Lock()
	delete(l.conns, conn)
	l.mu.Unlock()
	l.active.Done()
}

// drain closes every connection still served and waits until their
// goroutines have returned.
func (l *netListener) drain() {
	l.mu.Lock()
	l.draining = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.active.Wait()
}

// newListener binds cfg's address; it accepts through conns with a cap of
// perAddress connections for one client address. A refused MQTT client is
// closed before TLS (an MQTT answer would need its CONNECT first); a
// refused WebSocket client gets an HTTP 429 or 503.
func newListener(cfg Listener, timeout time.Duration, conns *netlimit.Limiter, perAddress int, log *slog.Logger) (*netListener, error) {
	if cfg.Kind != ListenerTCP && cfg.Kind != ListenerWebSocket {
		return nil, fmt.Errorf("broker: listener %s: kind %q is not %s or %s", cfg.Name, cfg.Kind, ListenerTCP, ListenerWebSocket)
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("mqtt.%s.address: %w", cfg.Name, err)
	}
	p := netlimit.Policy{Name: "mqtt-" + cfg.Name, PerAddress: perAddress}
	if cfg.Kind == ListenerWebSocket {
		p.Refuse = netlimit.HTTPRefusal(cfg.TLS)
	}
	l := &netListener{cfg: cfg, ln: conns.Listen(ln, p), timeout: timeout, log: log}
	if cfg.Kind == ListenerWebSocket {
		l.http = &http.Server{
			// A copy: net/http adds its protocols to the config it serves
			// with, which another listener may be handshaking with.
			TLSConfig:         cfg.TLS.Clone(),
			ReadHeaderTimeout: timeout,
			MaxHeaderBytes:    16 << 10, // an upgrade request: a token at most
			IdleTimeout:       timeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	return l, nil
}

func (l *netListener) Address() string { return l.ln.Addr().String() }

// serve accepts connections until the listener is shut down, and hands
// each to serveConn once its TLS handshake is done.
func (l *netListener) serve(serveConn func(net.Conn)) {
	if l.cfg.Kind == ListenerWebSocket {
		l.serveWebSocket(serveConn)
		return
	}
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait and retry, as net/http does.
			l.log.Warn("mqtt: accept failed; retrying", "listener", l.cfg.Name, "err", err, "in", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !l.track(conn) {
			continue
		}
		go l.handle(conn, serveConn)
	}
}

// handle runs one TCP connection until it ends. A TLS connection is served
// on a goroutine of its own once the handshake is done: the handshake's
// deep calls grow a stack to 16 KiB, which Go would shrink no further than
// to 8 KiB while the connection waits, idle, for its next packet. An idle
// connection, plain (mqtt.Plain) or TLS (mqtt.TLSConn), is parked by the
// core outside crypto/tls, without a goroutine.
func (l *netListener) handle(conn net.Conn, serveConn func(net.Conn)) {
	// Until CONNECT is accepted; the core then sets keep-alive deadlines.
	conn.SetDeadline(time.Now().Add(l.timeout))
	if l.cfg.TLS == nil {
		serveConn(l.served(mqtt.Plain(conn), conn))
		return
	}
	tc := mqtt.TLSServer(conn, l.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		l.log.Debug("mqtt: TLS handshake failed", "listener", l.cfg.Name, "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		l.untrack(conn)
		return
	}
	// The core answers the CONNECT on this goroutine, whose stack the
	// handshake grew, and serves the connection on one that starts small.
	serveConn(l.served(tc, conn))
}

// served is c, tracked as raw, for the core: closing it untracks raw.
func (l *netListener) served(c, raw net.Conn) *listenerConn {
	return &listenerConn{Conn: c, l: l, raw: raw}
}

// listenerConn is a connection with the listener that accepted it, for the
// listener's settings at CONNECT, the admin API and the audit log. The
// core closes it when the connection ends, which is when the listener
// stops tracking it (the core's ServeConn returns after the CONNECT).
type listenerConn struct {
	net.Conn
	l      *netListener
	raw    net.Conn // as tracked: the TCP connection under TLS or WebSocket
	closed sync.Once
}

func (c *listenerConn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() { c.l.untrack(c.raw) })
	return err
}

// ConnectionState is the TLS state of the connection, if it has one.
func (c *listenerConn) ConnectionState() tls.ConnectionState {
	if cs, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return cs.ConnectionState()
	}
	return tls.ConnectionState{}
}

// ReadNow, WaitReadable and Socket are the connection's under it
// (mqtt.TLSConn, mqtt.Plain), so that the core parks an idle connection
// outside crypto/tls and without a goroutine; over WebSocket ReadNow is
// Read, which never says mqtt.ErrWouldWait, and there is no socket.
func (c *listenerConn) ReadNow(p []byte) (int, error) {
	if r, ok := c.Conn.(interface{ ReadNow([]byte) (int, error) }); ok {
		return r.ReadNow(p)
	}
	return c.Conn.Read(p)
}

func (c *listenerConn) WaitReadable() error {
	if r, ok := c.Conn.(interface{ WaitReadable() error }); ok {
		return r.WaitReadable()
	}
	return nil
}

func (c *listenerConn) Socket() syscall.RawConn {
	if r, ok := c.Conn.(interface{ Socket() syscall.RawConn }); ok {
		return r.Socket()
	}
	return nil
}

// listenerOf is the listener that accepted conn (from the core's Client.Conn).
func listenerOf(conn net.Conn) *netListener {
	if lc, ok := conn.(*listenerConn); ok {
		return lc.l
	}
	return &netListener{}
}

// serveWebSocket serves HTTP upgrades to MQTT over WebSocket at WebSocketPath.
func (l *netListener) serveWebSocket(serveConn func(net.Conn)) {
	up := &websocket.Upgrader{
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: l.timeout,
		CheckOrigin:      l.originAllowed,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+WebSocketPath, func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil) // answers 403 itself when CheckOrigin refuses
		if err != nil {
			return
		}
		raw := c.UnderlyingConn()
		if !l.track(raw) {
			return
		}
		raw.SetDeadline(time.Now().Add(l.timeout))
		serveConn(l.served(mqtt.WebSocket(c), raw))
	})
	l.http.Handler = mux
	var err error
	if l.cfg.TLS != nil {
		err = l.http.ServeTLS(l.ln, "", "")
	} else {
		err = l.http.Serve(l.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !l.closed.Load() {
		l.log.Error("mqtt: WebSocket listener stopped", "listener", l.cfg.Name, "err", err)
	}
}

// originAllowed is the Origin check of RFC 6455 §10.2 for browsers.
func (l *netListener) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	return origin == "" || slices.Contains(l.cfg.AllowedOrigins, origin)
}

// shutdown stops accepting connections; those open are left to the broker.
func (l *netListener) shutdown() {
	if !l.closed.CompareAndSwap(false, true) {
		return
	}
	if l.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.http.Shutdown(ctx) // hijacked WebSocket connections are not waited for
		cancel()
	}
	l.ln.Close() // also when Serve never ran
}

// peerChain returns the client certificate chain of conn, if it presented one.
func peerChain(conn net.Conn) []*x509.Certificate {
	cs, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil
	}
	return cs.ConnectionState().PeerCertificates
}
