package mqtt

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

var sub = mqtttest.Sub

// TestPublishQoS carries a message at each QoS both ways: QoS 1 with
// PUBACK, QoS 2 with PUBREC, PUBREL, PUBCOMP, each side's packet
// identifiers its own.
func TestPublishQoS(t *testing.T) {
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		s := newServer(t, nil)
		subr, _ := s.connect(t, v, "sub", nil)
		subr.Subscribe(1, []packet.ReasonCode{0, 1, 2}, sub("q0", 0), sub("q1", 1), sub("q2", 2))
		pub, _ := s.connect(t, v, "pub", nil)
		for qos := range byte(3) {
			topic := []string{"q0", "q1", "q2"}[qos]
			pub.Send(&packet.Publish{QoS: qos, Topic: topic, PacketID: 77, Payload: []byte("m")})
			switch qos {
			case 1:
				if a := pub.Read().(*packet.Ack); a.Kind != packet.PUBACK || a.PacketID != 77 || a.Code != 0 {
					t.Fatalf("v%d: %+v", v, a)
				}
			case 2:
				if a := pub.Read().(*packet.Ack); a.Kind != packet.PUBREC || a.PacketID != 77 {
					t.Fatalf("v%d: %+v", v, a)
				}
				pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 77})
				if a := pub.Read().(*packet.Ack); a.Kind != packet.PUBCOMP || a.PacketID != 77 || a.Code != 0 {
					t.Fatalf("v%d: %+v", v, a)
				}
			}
			p := subr.Publication()
			if p.Topic != topic || p.QoS != qos || string(p.Payload) != "m" {
				t.Fatalf("v%d: delivered %+v", v, p)
			}
			switch qos {
			case 1:
				subr.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			case 2:
				subr.Send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				if a := subr.Read().(*packet.Ack); a.Kind != packet.PUBREL || a.PacketID != p.PacketID {
					t.Fatalf("v%d: %+v", v, a)
				}
				subr.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			}
		}
		subr.Send(&packet.Ping{})
		if _, ok := subr.Read().(*packet.Ping); !ok {
			t.Fatal("no PINGRESP")
		}
		if cl := s.Client("sub"); cl == nil || inflight(cl) != 0 {
			t.Fatalf("v%d: messages left in flight", v)
		}
	}
}

// TestV311NeverDisconnect is issue 16 item 3: a 3.1.1 client is never
// sent DISCONNECT: not after a refused publish, not when the server ends
// the connection (revocation, shutdown).
func TestV311NeverDisconnect(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V311, "old", nil)
	c.Send(&packet.Publish{QoS: 1, Topic: "secret/x", PacketID: 1, Payload: []byte("x")})
	c.Closed()

	c, _ = s.connect(t, packet.V311, "old", nil)
	s.Disconnect("old", packet.NotAuthorized, "revoked", true)
	c.Closed()
	eventually(t, "the discarded session is gone", func() bool { return s.Client("old") == nil })
}

// TestProtocolErrors is issue 16 item 4 and the malformed-packet classes:
// MQTT 5 gets DISCONNECT with the reason, 3.1.1 a closed connection.
func TestProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		raw    []byte
		code   packet.ReasonCode
		v5only bool // a well-formed 3.1.1 packet, which has no properties
	}{
		{"reserved flags", []byte{0xC1, 0x00}, packet.MalformedPacket, false},
		{"bad remaining length", []byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, packet.MalformedPacket, false},
		{"topic with U+0000", []byte{0x30, 0x05, 0x00, 0x02, 'a', 0x00, 0x00}, packet.MalformedPacket, false},
		{"duplicate property", []byte{0x30, 0x0E, 0x00, 0x01, 'a', 0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2}, packet.ProtocolError, true},
		{"oversized", append([]byte{0x30, 0xE8, 0x07}, make([]byte, 1000)...), packet.PacketTooLarge, false},
		{"second CONNECT", []byte{0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0, 1, 'c'}, packet.ProtocolError, false},
		{"unknown topic alias", []byte{0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05}, packet.ProtocolError, false},
		{"topic alias above the maximum", []byte{0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x23, 0xFF, 0xFF}, packet.TopicAliasInvalid, true},
		{"wildcard topic", []byte{0x30, 0x05, 0x00, 0x01, '#', 0x00, 'x'}, packet.TopicNameInvalid, false},
		{"No Local on a shared subscription", []byte{0x82, 0x10, 0, 1, 0, 0, 0x0A, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 't', 0x04}, packet.ProtocolError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(c *Config) { c.MaxPacketSize = 512 })
			c, _ := s.connect(t, packet.V5, "c", nil)
			c.Write(tc.raw)
			c.Disconnected(tc.code)
			if tc.v5only {
				return
			}
			c3, _ := s.connect(t, packet.V311, "c3", nil)
			c3.Write(tc.raw)
			c3.Closed()
		})
	}
}

// TestConformance runs the suite every MQTT server of thingid must pass.
func TestConformance(t *testing.T) {
	s := newServer(t, func(c *Config) { c.MaxPacketSize = 4096 })
	mqtttest.Run(t, mqtttest.Target{Addr: s.addr, Allowed: "conformance/t", Denied: "secret/t", MaxPacketSize: 4096,
		Credentials: func(pk *packet.Connect) {
			pk.UsernameFlag, pk.Username, pk.PasswordFlag, pk.Password = true, "u", true, []byte("ok")
		}})
}

// TestServerKeepAlive: the server announces its cap on keep-alive to a
// client asking for none or more (§3.2.2.3.14).
func TestServerKeepAlive(t *testing.T) {
	s := newServer(t, func(c *Config) { c.MaxKeepAlive = 60 * time.Second })
	_, ack := s.connect(t, packet.V5, "k0", func(c *packet.Connect) { c.KeepAlive = 0 })
	if !ack.Props.Has(packet.PropServerKeepAlive) || ack.Props.ServerKeepAlive != 60 {
		t.Fatalf("CONNACK %+v", ack.Props)
	}
}

// TestAttackTrickledPacketKeepsNoConnection: keep-alive counts whole
// packets (§3.1.2.10). A client that announces a PUBLISH and sends its
// bytes one at a time, each well within 1.5 keep-alive periods of the
// last, is ended as one that sent nothing: a byte is not a packet.
func TestAttackTrickledPacketKeepsNoConnection(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "trickle", func(c *packet.Connect) { c.KeepAlive = 1 })
	c.Write([]byte{0x30, 100})                    // a QoS 0 PUBLISH of 100 bytes, to come
	defer trickle(c, 400*time.Millisecond, 100)() // at most 40 s; the server must end it long before
	c.Disconnected(packet.KeepAliveTimeout)
}

// TestAttackUnfinishedPacketWithoutKeepAlive: a client without keep-alive
// may stay idle as long as it likes, but a packet it begins must be
// finished within Config.PacketWait, or the connection ends (MQTT 5:
// DISCONNECT 0x80 saying so), whether the connection waits parked or not.
func TestAttackUnfinishedPacketWithoutKeepAlive(t *testing.T) {
	const wait = 400 * time.Millisecond
	s := newServer(t, func(c *Config) { c.PacketWait = wait })
	noKeepAlive := func(c *packet.Connect) { c.KeepAlive = 0 }
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		c, _ := s.connect(t, v, "idle", noKeepAlive)
		c.Send(&packet.Ping{}) // a whole packet, then longer than the wait idle
		if got := c.Read(); got.Type() != packet.PINGRESP {
			t.Fatalf("v%d: %+v", v, got)
		}
		time.Sleep(3 * wait)
		c.Send(&packet.Ping{})
		if got := c.Read(); got.Type() != packet.PINGRESP {
			t.Fatalf("v%d: an idle connection without keep-alive was ended: %+v", v, got)
		}

		c.Write([]byte{0x30, 0x80, 0xD0, 0x0F, 0x00, 0x01, 't'}) // a PUBLISH of 256,000 bytes, begun
		start := time.Now()
		if v == packet.V5 {
			if d := c.Disconnected(packet.UnspecifiedError); !strings.Contains(d.Props.ReasonString, "not completed") {
				t.Errorf("reason %q", d.Props.ReasonString)
			}
		} else {
			c.Closed()
		}
		if took := time.Since(start); took < wait {
			t.Errorf("v%d: ended after %v, before the wait", v, took)
		}
	}
}

// TestAnnouncedPacketGrowsWithItsBytes: the read buffer grows with the
// bytes that came, not to the size a header announces: 7 bytes of a
// PUBLISH announcing 256,000 hold no buffer of that size (a client could
// pin the Maximum Packet Size with 5 bytes). The whole packet, sent in
// pieces, is read intact.
func TestAnnouncedPacketGrowsWithItsBytes(t *testing.T) {
	s := newServer(t, nil)
	head := []byte{0x30, 0x80, 0xD0, 0x0F, 0x00, 0x01, 't'}
	read := func(parts ...[]byte) (*conn, packet.Header, []byte, error) {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close() })
		go func() {
			for _, p := range parts {
				client.Write(p)
			}
			client.Close()
		}()
		c := &conn{srv: s.Server, nc: server, version: packet.V5}
		h, body, err := c.next()
		return c, h, body, err
	}
	c, _, _, err := read(head)
	if err == nil {
		t.Fatal("a packet read from 7 bytes")
	}
	if n := cap(*c.rbuf); n > 8<<10 {
		t.Errorf("7 bytes of an announced 256,000 hold a buffer of %d bytes", n)
	}
	payload := bytes.Repeat([]byte("0123456789"), 25_600)[:256_000-3]
	var parts [][]byte
	for rest := append(slices.Clone(head), payload...); len(rest) > 0; {
		n := min(len(rest), 3000)
		parts, rest = append(parts, rest[:n]), rest[n:]
	}
	_, h, body, err := read(parts...)
	if err != nil || h.Remaining != 256_000 || !bytes.Equal(body[3:], payload) {
		t.Fatalf("the whole packet: %+v, %d bytes, %v", h, len(body), err)
	}
}

func inflight(cl *Client) int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.inflight)
}
