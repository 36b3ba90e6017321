package mqtt

import (
	"bytes"
	"reflect"
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

// TestReceiveMaximum is issue 16 item 1: a subscriber announcing Receive
// Maximum 2 that acknowledges nothing gets 2 of 5 QoS 1 messages, and one
// more for each acknowledgement (MQTT 5 §4.9).
func TestReceiveMaximum(t *testing.T) {
	s := newServer(t, nil)
	subr, _ := s.connect(t, packet.V5, "slow", func(c *packet.Connect) {
		c.Props.ReceiveMaximum = 2
		c.Props.Set(packet.PropReceiveMaximum)
	})
	subr.Subscribe(1, []packet.ReasonCode{1}, sub("t", 1))
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	for i := range 5 {
		pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: uint16(i + 1), Payload: []byte{byte('0' + i)}})
		pub.Read()
	}
	first, second := subr.Publication(), subr.Publication()
	if string(first.Payload) != "0" || string(second.Payload) != "1" {
		t.Fatalf("got %q, %q", first.Payload, second.Payload)
	}
	// Nothing more until an acknowledgement: a PINGRESP comes first.
	subr.Send(&packet.Ping{})
	if p, ok := subr.Read().(*packet.Ping); !ok {
		t.Fatalf("a third message past Receive Maximum 2: %+v", p)
	}
	subr.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: first.PacketID})
	if p := subr.Publication(); string(p.Payload) != "2" {
		t.Fatalf("after one PUBACK: %q", p.Payload)
	}
}

// TestAckNoEcho is issue 16 item 2: a QoS 1 PUBLISH with user properties
// is answered 40 02 <id>, the short PUBACK without the publisher's
// properties; with no subscriber, 0x10 and still no properties.
func TestAckNoEcho(t *testing.T) {
	s := newServer(t, nil)
	subr, _ := s.connect(t, packet.V5, "sub", nil)
	subr.Subscribe(1, []packet.ReasonCode{1}, sub("t", 1))
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	p := &packet.Publish{QoS: 1, Topic: "t", PacketID: 9, Payload: []byte("x")}
	p.Props.User = []packet.UserProperty{{Key: "trace", Value: "abc"}}
	pub.Send(p)
	if b, _ := pub.ReadRaw(); !bytes.Equal(b, []byte{0x40, 0x02, 0x00, 0x09}) {
		t.Fatalf("PUBACK % x", b)
	}
	if got := subr.Publication(); !reflect.DeepEqual(got.Props.User, p.Props.User) {
		t.Fatalf("user properties not passed through: %+v", got.Props.User)
	}
	p.Topic = "nobody"
	pub.Send(p)
	if b, _ := pub.ReadRaw(); !bytes.Equal(b, []byte{0x40, 0x03, 0x00, 0x09, 0x10}) {
		t.Fatalf("PUBACK % x", b)
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

// TestKeepAlive: the server waits one and a half keep-alive periods
// (§3.1.2.10), so a client pinging a little later than its keep-alive of
// 1 s stays; and it announces its own cap as Server Keep Alive.
func TestKeepAlive(t *testing.T) {
	s := newServer(t, func(c *Config) { c.MaxKeepAlive = 60 * time.Second })
	c, _ := s.connect(t, packet.V5, "k", func(c *packet.Connect) { c.KeepAlive = 1 })
	for range 3 {
		time.Sleep(1200 * time.Millisecond)
		c.Send(&packet.Ping{})
		if _, ok := c.Read().(*packet.Ping); !ok {
			t.Fatal("no PINGRESP")
		}
	}
	_, ack := s.connect(t, packet.V5, "k0", func(c *packet.Connect) { c.KeepAlive = 0 })
	if !ack.Props.Has(packet.PropServerKeepAlive) || ack.Props.ServerKeepAlive != 60 {
		t.Fatalf("CONNACK %+v", ack.Props)
	}
}

func inflight(cl *Client) int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.inflight)
}
