package coapgw

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
)

// natSocket is a client's UDP socket behind a NAT that re-maps it: after
// remap its datagrams leave from another port, as when a NAT's binding
// times out.
type natSocket struct {
	mu  sync.Mutex
	cur *net.UDPConn
}

func newNATSocket(t *testing.T) *natSocket {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return &natSocket{cur: c}
}

func (n *natSocket) conn() *net.UDPConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur
}

func (n *natSocket) remap(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	old := n.cur
	n.cur = c
	n.mu.Unlock()
	old.Close()
}

func (n *natSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := n.conn()
		k, a, err := c.ReadFrom(b)
		if err != nil && c != n.conn() {
			continue // remapped while reading: read from the new port
		}
		return k, a, err
	}
}

func (n *natSocket) WriteTo(b []byte, a net.Addr) (int, error) { return n.conn().WriteTo(b, a) }
func (n *natSocket) Close() error                              { return n.conn().Close() }
func (n *natSocket) LocalAddr() net.Addr                       { return n.conn().LocalAddr() }
func (n *natSocket) SetDeadline(t time.Time) error             { return n.conn().SetDeadline(t) }
func (n *natSocket) SetReadDeadline(t time.Time) error         { return n.conn().SetReadDeadline(t) }
func (n *natSocket) SetWriteDeadline(t time.Time) error        { return n.conn().SetWriteDeadline(t) }

// With Connection IDs (RFC 9146) a thing whose NAT re-maps its address
// keeps its DTLS session: the gateway finds the session by the ID its
// records carry and answers at the new address (RFC 9146 §6), with no new
// handshake. Without them the session is lost with the address.
func TestConnectionIDKeepsSessionAcrossAddressChange(t *testing.T) {
	e := newEnv(t, nil)
	_, cert := e.thing("CID-1")
	for _, c := range []struct {
		name  string
		cid   func() []byte
		keeps bool
	}{{"with connection IDs", piondtls.OnlySendCIDGenerator(), true}, {"without", nil, false}} {
		nat := newNATSocket(t)
		dc, err := piondtls.Client(nat, e.gw.DTLSAddr(), &piondtls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret, ConnectionIDGenerator: c.cid})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := dc.HandshakeContext(ctx); err != nil {
			t.Fatalf("%s: handshake: %v", c.name, err)
		}
		cc := dtls.Client(dc)
		if !callsHome(ctx, cc) {
			t.Fatalf("%s: no answer before the address changed", c.name)
		}
		cancel()
		nat.remap(t)
		ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
		if got := callsHome(ctx, cc); got != c.keeps {
			t.Errorf("%s: answered after the address changed: %v, want %v", c.name, got, c.keeps)
		}
		cancel()
		cc.Close()
	}
}
