package mqtttest

import (
	"bytes"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Target is a server for Run.
type Target struct {
	Addr string
	// Credentials fills in what a CONNECT needs to be accepted.
	Credentials func(pk *packet.Connect)
	// Allowed is a topic name every client may publish and subscribe to;
	// Denied one no client may publish to.
	Allowed, Denied string
	// MaxPacketSize is the largest packet the server takes.
	MaxPacketSize int
	// Narrowed fills an AUTH re-authenticating (MQTT 5 §4.12.1) a client
	// that connected with Credentials, with a credential that may no longer
	// publish to Allowed; nil: WillRechecked is skipped.
	Narrowed func(a *packet.Auth)
}

func (tg Target) connect(t *testing.T, v packet.Version, id string, mod func(*packet.Connect)) *Conn {
	t.Helper()
	c := Dial(t, tg.Addr, v)
	pk := &packet.Connect{CleanStart: true, ClientID: id, KeepAlive: 30}
	if tg.Credentials != nil {
		tg.Credentials(pk)
	}
	if mod != nil {
		mod(pk)
	}
	c.Connect(pk)
	return c
}

// Run is the conformance suite for the items of issue 16 that any MQTT
// server of thingid must get right, each with raw packets. Run against the
// mochi-based broker thingid had before (its anonymous listener), every
// case failed but AliasChecked, which its hook patched around mochi;
// WillRechecked, with a token, failed there too.
func Run(t *testing.T, tg Target) {
	// MQTT 5 §4.9: a client's Receive Maximum bounds the QoS 1 and 2
	// messages sent to it and not acknowledged.
	t.Run("ReceiveMaximum", func(t *testing.T) {
		sub := tg.connect(t, packet.V5, "conformance-slow", func(pk *packet.Connect) {
			pk.Props.ReceiveMaximum = 2
			pk.Props.Set(packet.PropReceiveMaximum)
		})
		sub.Subscribe(1, []packet.ReasonCode{1}, Sub(tg.Allowed, 1))
		pub := tg.connect(t, packet.V5, "conformance-pub", nil)
		for i := range 5 {
			pub.Send(&packet.Publish{QoS: 1, Topic: tg.Allowed, PacketID: uint16(i + 1), Payload: []byte{'0' + byte(i)}})
			pub.Read()
		}
		first := sub.Publication()
		sub.Publication()
		sub.Send(&packet.Ping{})
		if got := sub.Read(); got.Type() != packet.PINGRESP {
			t.Fatalf("a third unacknowledged message past Receive Maximum 2: %+v", got)
		}
		sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: first.PacketID})
		if p := sub.Publication(); string(p.Payload) != "2" {
			t.Fatalf("after one PUBACK: %q", p.Payload)
		}
	})

	// MQTT 5 §3.4.2: a PUBACK's reason code is a PUBACK code, and its user
	// properties are the server's own, never the publisher's echoed.
	t.Run("AckWithoutEcho", func(t *testing.T) {
		sub := tg.connect(t, packet.V5, "conformance-sub", nil)
		sub.Subscribe(1, []packet.ReasonCode{1}, Sub(tg.Allowed, 1))
		pub := tg.connect(t, packet.V5, "conformance-pub", nil)
		p := &packet.Publish{QoS: 1, Topic: tg.Allowed, PacketID: 9, Payload: []byte("x")}
		p.Props.User = []packet.UserProperty{{Key: "trace", Value: "abc"}}
		pub.Send(p)
		if b, err := pub.ReadRaw(); err != nil || !bytes.Equal(b, []byte{0x40, 0x02, 0x00, 0x09}) {
			t.Fatalf("PUBACK % x, %v; want 40 02 00 09", b, err)
		}
	})

	// MQTT 3.1.1 §3.14: only a client sends DISCONNECT; a refused publish
	// (§3.3.5: no negative acknowledgement) ends the connection without one.
	t.Run("V311NoDisconnect", func(t *testing.T) {
		c := tg.connect(t, packet.V311, "conformance-v3", nil)
		c.Send(&packet.Publish{QoS: 1, Topic: tg.Denied, PacketID: 1, Payload: []byte("x")})
		c.Closed()
	})

	// MQTT 5 §4.13: a malformed packet is answered with DISCONNECT 0x81,
	// one over the Maximum Packet Size with 0x95.
	t.Run("Malformed", func(t *testing.T) {
		c := tg.connect(t, packet.V5, "conformance-bad", nil)
		c.Write([]byte{0xC1, 0x00}) // PINGREQ with a reserved flag set
		c.Disconnected(packet.MalformedPacket)
	})
	t.Run("TooLarge", func(t *testing.T) {
		c := tg.connect(t, packet.V5, "conformance-big", nil)
		c.Send(&packet.Publish{Topic: tg.Allowed, Payload: make([]byte, tg.MaxPacketSize)})
		c.Disconnected(packet.PacketTooLarge)
	})

	// MQTT 5 §3.1.2.10: the server waits one and a half keep-alive periods.
	t.Run("KeepAlive", func(t *testing.T) {
		c := tg.connect(t, packet.V5, "conformance-ka", func(pk *packet.Connect) { pk.KeepAlive = 1 })
		for range 2 {
			time.Sleep(1200 * time.Millisecond)
			c.Send(&packet.Ping{})
			if got := c.Read(); got.Type() != packet.PINGRESP {
				t.Fatalf("got %+v", got)
			}
		}
	})

	// MQTT 5 §3.3.2.3.4: a topic alias stands for its topic in every check.
	t.Run("AliasChecked", func(t *testing.T) {
		c := tg.connect(t, packet.V5, "conformance-alias", nil)
		for _, topic := range []string{tg.Denied, ""} {
			p := &packet.Publish{QoS: 1, Topic: topic, PacketID: 1, Payload: []byte("x")}
			p.Props.TopicAlias = 1
			p.Props.Set(packet.PropTopicAlias)
			c.Send(p)
			if a, ok := c.Read().(*packet.Ack); !ok || a.Code != packet.NotAuthorized {
				t.Fatalf("publish to %q through alias 1: %+v", topic, a)
			}
		}
	})

	// Item 5 of issue 16: a will is a publish, checked when it is sent, not
	// only at CONNECT. A client whose re-authentication took away the right
	// to publish its will's topic gets no will published when its
	// connection drops.
	t.Run("WillRechecked", func(t *testing.T) {
		if tg.Narrowed == nil {
			t.Skip("the target has no narrower credential")
		}
		sub := tg.connect(t, packet.V5, "conformance-will-sub", nil)
		sub.Subscribe(1, []packet.ReasonCode{1}, Sub(tg.Allowed, 1))
		pub := tg.connect(t, packet.V5, "conformance-will-pub", nil)
		c := tg.connect(t, packet.V5, "conformance-will", func(pk *packet.Connect) {
			pk.Will = &packet.Will{QoS: 1, Topic: tg.Allowed, Payload: []byte("will")}
		})
		a := &packet.Auth{Code: packet.ReAuthenticate}
		tg.Narrowed(a)
		c.Send(a)
		if got, ok := c.Read().(*packet.Auth); !ok || got.Code != packet.Success {
			t.Fatalf("re-authentication: %+v", got)
		}
		c.NC.Close() // without DISCONNECT: the will is due
		// The will is sent before the session ends; once a connection
		// under the client identifier finds no session, it was sent or
		// refused, and the sentinel comes after it.
		for present := true; present; {
			probe := Dial(t, tg.Addr, packet.V5)
			pk := &packet.Connect{ClientID: "conformance-will", KeepAlive: 30}
			tg.Credentials(pk)
			present = probe.Connect(pk).SessionPresent
			probe.Send(&packet.Disconnect{})
			probe.Closed()
		}
		pub.Send(&packet.Publish{QoS: 1, Topic: tg.Allowed, PacketID: 1, Payload: []byte("sentinel")})
		pub.Read()
		if p := sub.Publication(); string(p.Payload) != "sentinel" {
			t.Fatalf("got %q on %s: the will of a client that may no longer publish there", p.Payload, p.Topic)
		}
	})
}
