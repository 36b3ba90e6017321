package coapgw

import (
	"context"
	"net"
	"net/netip"
	"sync"

	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"golang.org/x/time/rate"
)

// maxTrackedAddresses bounds the per-address buckets kept; past it the map
// starts afresh (a flood of sources forgets the quiet ones, never grows).
const maxTrackedAddresses = 65536

// handshakeLimit admits new DTLS associations from one address at most at
// perSecond (bursts of burst); one past it is closed before its handshake.
type handshakeLimit struct {
	dtlsServer.Listener
	perSecond rate.Limit
	burst     int
	refused   func(addr net.Addr)

	mu      sync.Mutex
	buckets map[netip.Addr]*rate.Limiter
}

func (l *handshakeLimit) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	for {
		c, err := l.Listener.AcceptWithContext(ctx)
		if err != nil {
			return nil, err
		}
		if l.allow(c.RemoteAddr()) {
			return c, nil
		}
		l.refused(c.RemoteAddr())
		c.Close()
	}
}

func (l *handshakeLimit) allow(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= maxTrackedAddresses {
			l.buckets = map[netip.Addr]*rate.Limiter{}
		}
		b = rate.NewLimiter(l.perSecond, l.burst)
		l.buckets[ip] = b
	}
	return b.Allow()
}
