// Package netlimit bounds what clients can hold of the process: connections
// per client address and in all (below the open-files limit), and the time
// and bytes of a request body. Every listener of thingid (HTTPS, gateway,
// MQTT) accepts through it, and it is where a trusted load balancer's PROXY
// protocol header replaces the TCP peer by the client it names. It knows
// nothing of routes' meaning or of who a client is beyond its address.
package netlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reason says why a connection was refused.
type Reason string

// Reasons, the label of thingid_connections_refused_total.
const (
	// ReasonAddress: the client's address holds its listener's cap (429).
	ReasonAddress Reason = "address"
	// ReasonTotal: the process holds its cap, or only its reserve is left
	// and the address already holds reserveShare connections (503).
	ReasonTotal Reason = "total"
	// ReasonProxyHeader: a trusted proxy's connection without a valid PROXY
	// protocol header, or a header from a peer that is not a trusted proxy
	// (closed without an answer).
	ReasonProxyHeader Reason = "proxy_header"
)

// Options configure a Limiter.
type Options struct {
	// Max is the most connections all listeners together keep open; 0:
	// DefaultMax(). More than HighestMax() is an error.
	Max int
	// Log receives refusals, at most one line per LogEvery; nil: slog.Default().
	Log *slog.Logger
	// Registerer registers the metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Proxies are the load balancers that put a PROXY protocol header (v1
	// or v2) before their clients' bytes: a connection from one of them
	// counts, and is seen by every listener's server, as from the client
	// the header names, and is refused without a valid header. A header
	// from any other peer is refused, never read.
	Proxies []netip.Prefix
}

// LogEvery is the least time between two log lines about refusals.
const LogEvery = 10 * time.Second

// reserveShare: once only the reserve is left, an address holding fewer
// connections than this on the listener still gets one (a health checker,
// a browser with a kept-alive connection); one holding more does not.
const reserveShare = 4

// maxRefusing bounds the refused connections being answered at once; beyond
// it a refused connection is closed without an answer, so that refusing
// never costs more than a few dozen descriptors and goroutines.
const maxRefusing = 64

// maxHeaders bounds the connections of trusted proxies whose header is
// being read at once; the accepting goroutine waits for a slot.
const maxHeaders = 256

// headerTimeout bounds the wait for a trusted proxy's header (the
// specification asks for at least 3 s, a TCP retransmission).
const headerTimeout = 5 * time.Second

// Limiter counts the connections of every listener of one process.
type Limiter struct {
	max, reserve int
	log          *slog.Logger
	refused      *prometheus.CounterVec
	open         *prometheus.GaugeVec
	bodies       *prometheus.CounterVec
	refusing     chan struct{} // a slot per refusal being answered
	proxies      []netip.Prefix
	headers      chan struct{} // a slot per proxy header being read

	mu         sync.Mutex
	total      int
	lastLog    time.Time
	suppressed int // refusals not logged since lastLog
}

// New returns a Limiter; its error names connections.max when Max is more
// than the open-files limit allows.
func New(o Options) (*Limiter, error) {
	switch limit := HighestMax(); {
	case o.Max < 0:
		return nil, fmt.Errorf("connections.max: %d is negative", o.Max)
	case o.Max > limit:
		return nil, fmt.Errorf("connections.max: %d is more than the open-files limit allows (%d); raise the limit (ulimit -n, systemd LimitNOFILE=) or lower connections.max", o.Max, limit)
	case o.Max == 0:
		o.Max = DefaultMax()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	l := &Limiter{
		max: o.Max,
		// The last tenth is kept for addresses that hold next to nothing,
		// so that a few addresses filling the process never lock out a
		// health check or a client from elsewhere.
		reserve: o.Max / 10,
		log:     o.Log,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_connections_refused_total",
			Help: "Connections refused by listener and reason (address: the client address's cap; total: the process's cap).",
		}, []string{"listener", "reason"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "thingid_connections_open", Help: "Connections open by listener.",
		}, []string{"listener"}),
		bodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_request_bodies_refused_total",
			Help: "Request bodies refused by listener and reason (too_large, timeout).",
		}, []string{"listener", "reason"}),
		refusing: make(chan struct{}, maxRefusing),
		proxies:  o.Proxies,
		headers:  make(chan struct{}, maxHeaders),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{l.refused, l.open, l.bodies} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("netlimit: register metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Max is the most connections the process keeps open.
func (l *Limiter) Max() int { return l.max }

// DefaultMax is the open-files limit less what the process needs besides
// client connections (files, the database, upstream connections of the
// gateway): a quarter of the limit, at least 256; at least 64 in all.
func DefaultMax() int {
	n := openFilesLimit()
	return max(64, n-max(256, n/4))
}

// HighestMax is the most connections.max may be: the open-files limit less
// 256 descriptors for the process's own files and the database. Above the
// default, what the gateway's upstream connections need is the operator's
// to leave.
func HighestMax() int {
	return max(64, openFilesLimit()-256)
}

// Policy is one listener's rule.
type Policy struct {
	// Name labels the listener in metrics and logs ("https", "gateway", "mqtt-tls").
	Name string
	// PerAddress is the most connections one client address keeps open on
	// this listener (IPv6 addresses count by /64); 0: no cap of its own.
	PerAddress int
	// Exempt addresses (trusted proxies, which carry many clients) have no
	// per-address cap; the process's cap still counts them.
	Exempt func(netip.Addr) bool
	// Refuse tells a refused client why, then closes conn; nil: close.
	// It runs on its own goroutine, with a deadline set on conn.
	Refuse func(conn net.Conn, why Reason)
}

// Listen returns ln accepting only what p and the process's cap allow;
// refused connections are answered by p.Refuse and never returned.
func (l *Limiter) Listen(ln net.Listener, p Policy) net.Listener {
	l.open.WithLabelValues(p.Name) // present at 0 from the start
	return &listener{Listener: ln, l: l, p: p, perAddr: map[netip.Prefix]int{},
		ready: make(chan accepted), done: make(chan struct{})}
}

// proxy says whether a is a trusted proxy's address.
func (l *Limiter) proxy(a netip.Addr) bool {
	for _, p := range l.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type listener struct {
	net.Listener
	l *Limiter
	p Policy

	mu      sync.Mutex
	perAddr map[netip.Prefix]int
	reading map[net.Conn]struct{} // trusted proxies' connections whose header is being read

	// With trusted proxies, one goroutine accepts and hands over through
	// ready, so that a proxy's header is read while others are accepted.
	start     sync.Once
	ready     chan accepted
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// accepted is a connection admitted, or the error of Accept.
type accepted struct {
	c   net.Conn
	err error
}

func (ln *listener) Accept() (net.Conn, error) {
	if len(ln.l.proxies) == 0 {
		for {
			c, err := ln.Listener.Accept()
			if err != nil {
				return nil, err
			}
			if a := ln.admitConn(c); a != nil {
				return a, nil
			}
		}
	}
	ln.start.Do(func() { go ln.acceptLoop() })
	select {
	case a := <-ln.ready:
		return a.c, a.err
	case <-ln.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and ends the connections whose header is being read.
func (ln *listener) Close() error {
	ln.closeOnce.Do(func() {
		close(ln.done)
		ln.mu.Lock()
		for c := range ln.reading {
			c.Close()
		}
		ln.mu.Unlock()
	})
	return ln.Listener.Close()
}

// acceptLoop accepts until the listener is closed: a trusted proxy's
// connection is admitted once its header is read (on a goroutine of its
// own, at most maxHeaders at once), any other one at once.
func (ln *listener) acceptLoop() {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			// A transient error (out of descriptors) goes to the server,
			// which waits before calling again; the loop waits with it.
			if !ln.deliver(accepted{err: err}) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if _, peer, ok := addressKey(c.RemoteAddr()); !ok || !ln.l.proxy(peer) {
			if a := ln.admitConn(c); a != nil && !ln.deliver(accepted{c: a}) {
				a.Close()
			}
			continue
		}
		select {
		case ln.l.headers <- struct{}{}:
		case <-ln.done:
			c.Close()
			return
		}
		go func() {
			defer func() { <-ln.l.headers }()
			if a := ln.admitProxied(c); a != nil && !ln.deliver(accepted{c: a}) {
				a.Close()
			}
		}()
	}
}

// deliver hands a to Accept; false once the listener is closed.
func (ln *listener) deliver(a accepted) bool {
	select {
	case ln.ready <- a:
		return true
	case <-ln.done:
		return false
	}
}

// admitProxied reads a trusted proxy's header and admits the connection as
// the client's it names; nil when refused (no valid header, or a cap).
func (ln *listener) admitProxied(c net.Conn) net.Conn {
	if !ln.reads(c, true) {
		c.Close()
		return nil
	}
	c.SetReadDeadline(time.Now().Add(headerTimeout))
	br := bufio.NewReaderSize(c, 512)
	h, err := readProxyHeader(br)
	if !ln.reads(c, false) {
		return nil // closed by Close
	}
	if err != nil {
		ln.l.reject(c, ln.p.Name, err)
		return nil
	}
	c.SetReadDeadline(time.Time{})
	pc := &proxiedConn{Conn: c, buffered: br, remote: c.RemoteAddr()}
	if !h.local {
		pc.remote = net.TCPAddrFromAddrPort(h.src)
	}
	return ln.admitConn(pc)
}

// reads records that c's header is being read (or no longer is); false
// once the listener is closed.
func (ln *listener) reads(c net.Conn, begin bool) bool {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	select {
	case <-ln.done:
		return false
	default:
	}
	if begin {
		if ln.reading == nil {
			ln.reading = map[net.Conn]struct{}{}
		}
		ln.reading[c] = struct{}{}
	} else {
		delete(ln.reading, c)
	}
	return true
}

// admitConn counts c against the caps of its remote address, or refuses
// it (nil). A trusted proxy's own connections (health checks) and the
// policy's exempt addresses have no per-address cap.
func (ln *listener) admitConn(c net.Conn) net.Conn {
	key, peer, ok := addressKey(c.RemoteAddr())
	exempt := ok && (ln.l.proxy(peer) || ln.p.Exempt != nil && ln.p.Exempt(peer))
	if why := ln.admit(key, exempt); why != "" {
		ln.l.refuse(c, ln.p, why)
		return nil
	}
	ln.l.open.WithLabelValues(ln.p.Name).Inc()
	return &conn{Conn: c, ln: ln, key: key, checkHeader: !ok || !ln.l.proxy(peer)}
}

// admit counts a new connection from key, or says why not.
func (ln *listener) admit(key netip.Prefix, exempt bool) Reason {
	l := ln.l
	l.mu.Lock()
	defer l.mu.Unlock()
	ln.mu.Lock()
	defer ln.mu.Unlock()
	held := ln.perAddr[key]
	switch {
	case l.total >= l.max:
		return ReasonTotal
	case l.total >= l.max-l.reserve && held >= reserveShare && !exempt:
		return ReasonTotal
	case ln.p.PerAddress > 0 && held >= ln.p.PerAddress && !exempt:
		return ReasonAddress
	}
	l.total++
	ln.perAddr[key] = held + 1
	return ""
}

func (ln *listener) release(key netip.Prefix) {
	l := ln.l
	l.mu.Lock()
	l.total--
	l.mu.Unlock()
	ln.mu.Lock()
	if n := ln.perAddr[key] - 1; n > 0 {
		ln.perAddr[key] = n
	} else {
		delete(ln.perAddr, key)
	}
	ln.mu.Unlock()
	l.open.WithLabelValues(ln.p.Name).Dec()
}

// refuse answers a refused connection on its own goroutine, or closes it
// at once when maxRefusing are being answered already.
func (l *Limiter) refuse(c net.Conn, p Policy, why Reason) {
	l.refused.WithLabelValues(p.Name, string(why)).Inc()
	l.logRefusal(p.Name, why, c.RemoteAddr(), nil)
	if p.Refuse == nil {
		c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		p.Refuse(c, why)
	}()
}

// refuseTimeout bounds the answer to a refused connection (TLS handshake,
// response, waiting for the client to close).
const refuseTimeout = 2 * time.Second

// reject counts, logs and closes a connection refused for its PROXY
// protocol header.
func (l *Limiter) reject(c net.Conn, listener string, err error) {
	l.refused.WithLabelValues(listener, string(ReasonProxyHeader)).Inc()
	l.logRefusal(listener, ReasonProxyHeader, c.RemoteAddr(), err)
	c.Close()
}

// logRefusal logs the first refusal, then at most one line per LogEvery
// with the number of refusals since the last line; err says more, if any.
func (l *Limiter) logRefusal(listener string, why Reason, addr net.Addr, err error) {
	l.mu.Lock()
	now := time.Now()
	l.suppressed++
	if now.Sub(l.lastLog) < LogEvery {
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed, l.lastLog = 0, now
	total := l.total
	l.mu.Unlock()
	attrs := []any{"listener", listener, "reason", string(why), "remote", addr.String(),
		"refused", n, "since", LogEvery.String(), "open", total, "max", l.max}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	l.log.Warn("connections refused", attrs...)
}

// bodyRefused counts a request body refused on listener.
func (l *Limiter) bodyRefused(listener, reason string) {
	l.bodies.WithLabelValues(listener, reason).Inc()
}

// addressKey is what a per-address cap counts: the IPv4 address, or the /64
// of an IPv6 address (one subscriber's usual allocation); peer is the
// address itself. ok is false for a peer that is not an IP address (a Unix
// socket), which all count as one.
func addressKey(a net.Addr) (key netip.Prefix, peer netip.Addr, ok bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a == nil {
			return netip.Prefix{}, netip.Addr{}, false
		}
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Prefix{}, netip.Addr{}, false
		}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if !ip.IsValid() {
		return netip.Prefix{}, netip.Addr{}, false
	}
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), ip, true
	}
	p, _ := ip.Prefix(64)
	return p, ip, true
}

// conn releases its count once, on the first Close. A connection that is
// not a trusted proxy's is refused if it starts with a PROXY protocol
// header: its peer claims to speak for another address and is not believed.
type conn struct {
	net.Conn
	once sync.Once
	// ln and key are the listener and the address prefix counted (no
	// closure per connection: issue 16).
	ln          *listener
	key         netip.Prefix
	checkHeader bool // until the first Read
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.checkHeader && n > 0 {
		c.checkHeader = false
		if startsWithProxyHeader(p[:n]) {
			err := headerError("sent by %s, which is not in connections.proxyProtocol.trusted", c.RemoteAddr())
			c.ln.l.reject(c, c.ln.p.Name, err)
			return 0, err
		}
	}
	return n, err
}

// startsWithProxyHeader says whether b, the first bytes of a connection,
// are a PROXY protocol header's.
func startsWithProxyHeader(b []byte) bool {
	return bytes.HasPrefix(b, []byte("PROXY ")) || len(b) >= len(proxySig) && bytes.Equal(b[:len(proxySig)], proxySig)
}

// proxiedConn is a trusted proxy's connection after its header: its remote
// address is the client's, and its first bytes may be buffered already.
type proxiedConn struct {
	net.Conn
	buffered *bufio.Reader // nil once drained
	remote   net.Addr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

func (c *proxiedConn) Read(p []byte) (int, error) {
	if c.buffered != nil {
		if c.buffered.Buffered() > 0 {
			return c.buffered.Read(p)
		}
		c.buffered = nil
	}
	return c.Conn.Read(p)
}

// SyscallConn is the socket (syscall.Conn), for a reader that waits until
// it is readable (mqtt.TLSConn): an error while bytes read with the
// header are buffered here, which such a wait would not see. Once they are
// read, none are buffered again.
func (c *proxiedConn) SyscallConn() (syscall.RawConn, error) {
	if c.buffered != nil && c.buffered.Buffered() > 0 {
		return nil, errBuffered
	}
	return syscallConn(c.Conn)
}

var errBuffered = errors.New("netlimit: bytes are buffered above the socket")

// SyscallConn is the socket (syscall.Conn), for a reader that waits until
// it is readable or reads it directly (mqtt.TLSConn, mqtt.Plain): an error
// until the first bytes were read here, which Read checks for a PROXY
// header; nothing is buffered here.
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	if c.checkHeader {
		return nil, errUnchecked
	}
	return syscallConn(c.Conn)
}

var errUnchecked = errors.New("netlimit: the connection's first bytes are not read yet")

func syscallConn(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("netlimit: the connection has no socket")
	}
	return sc.SyscallConn()
}

// CloseWrite half-closes, for HTTPRefusal's linger.
func (c *proxiedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.ln.release(c.key) })
	return err
}

// ErrBodyTimeout is the error a request body's Read returns once its time is up.
var ErrBodyTimeout = errors.New("request body not received in time")
