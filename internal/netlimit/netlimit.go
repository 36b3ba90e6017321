// Package netlimit bounds what clients can hold of the process: connections
// per client address and in all (below the open-files limit), and the time
// and bytes of a request body. Every listener of thingid (HTTPS, gateway,
// MQTT) accepts through it. It knows nothing of routes' meaning or of who a
// client is beyond its TCP peer address.
package netlimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
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
)

// Options configure a Limiter.
type Options struct {
	// Max is the most connections all listeners together keep open; 0:
	// DefaultMax(). More than the open-files limit allows is an error.
	Max int
	// Log receives refusals, at most one line per LogEvery; nil: slog.Default().
	Log *slog.Logger
	// Registerer registers the metrics; nil: not registered.
	Registerer prometheus.Registerer
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

// Limiter counts the connections of every listener of one process.
type Limiter struct {
	max, reserve int
	log          *slog.Logger
	refused      *prometheus.CounterVec
	open         *prometheus.GaugeVec
	bodies       *prometheus.CounterVec
	refusing     chan struct{} // a slot per refusal being answered

	mu         sync.Mutex
	total      int
	lastLog    time.Time
	suppressed int // refusals not logged since lastLog
}

// New returns a Limiter; its error names connections.max when Max is more
// than the open-files limit allows.
func New(o Options) (*Limiter, error) {
	limit := DefaultMax()
	switch {
	case o.Max < 0:
		return nil, fmt.Errorf("connections.max: %d is negative", o.Max)
	case o.Max > limit:
		return nil, fmt.Errorf("connections.max: %d is more than the open-files limit allows (%d); raise the limit (ulimit -n, systemd LimitNOFILE=) or lower connections.max", o.Max, limit)
	case o.Max == 0:
		o.Max = limit
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
	return &listener{Listener: ln, l: l, p: p, perAddr: map[netip.Prefix]int{}}
}

type listener struct {
	net.Listener
	l *Limiter
	p Policy

	mu      sync.Mutex
	perAddr map[netip.Prefix]int
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, peer, ok := addressKey(c.RemoteAddr())
		exempt := ok && ln.p.Exempt != nil && ln.p.Exempt(peer)
		if why := ln.admit(key, exempt); why != "" {
			ln.l.refuse(c, ln.p, why)
			continue
		}
		ln.l.open.WithLabelValues(ln.p.Name).Inc()
		return &conn{Conn: c, release: func() { ln.release(key) }}, nil
	}
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
	l.logRefusal(p.Name, why, c.RemoteAddr())
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

// logRefusal logs the first refusal, then at most one line per LogEvery
// with the number of refusals since the last line.
func (l *Limiter) logRefusal(listener string, why Reason, addr net.Addr) {
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
	l.log.Warn("connections refused", "listener", listener, "reason", string(why), "remote", addr.String(),
		"refused", n, "since", LogEvery.String(), "open", total, "max", l.max)
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

// conn releases its count once, on the first Close.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ErrBodyTimeout is the error a request body's Read returns once its time is up.
var ErrBodyTimeout = errors.New("request body not received in time")
