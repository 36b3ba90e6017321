package broker

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/netlimit"
)

// headerFirst is a trusted proxy's connection that sends its PROXY header
// in the same segment as the client's first bytes (its ClientHello), so
// that they are read with the header and buffered above the socket.
type headerFirst struct {
	net.Conn
	header []byte
}

func (c *headerFirst) Write(p []byte) (int, error) {
	if c.header == nil {
		return c.Conn.Write(p)
	}
	b := append(c.header, p...)
	c.header = nil
	if n, err := c.Conn.Write(b); err != nil {
		return max(0, n-(len(b)-len(p))), err
	}
	return len(p), nil
}

// A TLS client behind a trusted proxy whose header came in one segment
// with the ClientHello (all of it, or its first part, as the header's
// reader buffers 512 bytes): no byte buffered with the header is lost to
// a reader that waits on the socket, the idle connection's reader waits
// outside crypto/tls once they are read, wakes for the next packet, and
// the broker sees the client the header names.
func TestIdleTLSBehindProxyHeader(t *testing.T) {
	conns, err := netlimit.New(netlimit.Options{Log: quiet, Proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.Connections = conns })
	proxy := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for name, curves := range map[string][]tls.CurveID{
		"a short ClientHello, all of it buffered": {tls.X25519},
		"a long ClientHello, its start buffered":  nil, // X25519MLKEM768's key share: over 1 KiB
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := proxy.Dial("tcp", e.b.Addr("tls"))
			if err != nil {
				t.Fatal(err)
			}
			th := e.thing("M")
			nc := &headerFirst{Conn: raw, header: []byte("PROXY TCP4 192.0.2.7 127.0.0.1 4711 8883\r\n")}
			c := mqtttest.New(t, tls.Client(nc, &tls.Config{RootCAs: e.pool, ServerName: "localhost", CurvePreferences: curves}), packet.V5)
			c.Connect(&packet.Connect{ClientID: th.ID, CleanStart: true, KeepAlive: 30, PasswordFlag: true, Password: []byte(e.thingToken(th))})
			if cl := e.b.server.Client(th.ID); cl == nil || cl.Conn().RemoteAddr().String() != "192.0.2.7:4711" {
				t.Fatalf("the broker sees the client as %v", cl.Conn().RemoteAddr())
			}
			e.waitReaders(t, 1)
			c.Send(&packet.Publish{Topic: "things/" + th.ID + "/telemetry", QoS: 1, PacketID: 1, Payload: []byte("21")})
			if ack, ok := c.Read().(*packet.Ack); !ok || ack.Kind != packet.PUBACK || ack.Code > 1 {
				t.Fatalf("after the wait: %+v", ack)
			}
			e.waitReaders(t, 1)
			c.Send(&packet.Disconnect{})
			e.waitReaders(t, 0)
		})
	}
}
