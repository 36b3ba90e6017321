package mqtt

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// TestAliasesOut: towards a client announcing Topic Alias Maximum 1, the
// first message on a topic carries topic and alias, later ones the alias
// alone, and a second topic goes in full (§3.3.2.3.4).
func TestAliasesOut(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "c", func(pk *packet.Connect) {
		pk.Props.TopicAliasMaximum = 1
		pk.Props.Set(packet.PropTopicAliasMaximum)
	})
	c.Subscribe(1, []packet.ReasonCode{0}, sub("a/#", 0))
	for _, topic := range []string{"a/long/topic", "a/long/topic", "a/other"} {
		c.Send(&packet.Publish{Topic: topic, Payload: []byte("x")})
	}
	for i, want := range []struct {
		topic string
		alias uint16
	}{{"a/long/topic", 1}, {"", 1}, {"a/other", 0}} {
		p := c.Publication()
		if p.Topic != want.topic || p.Props.TopicAlias != want.alias {
			t.Fatalf("message %d: topic %q alias %d, want %q %d", i, p.Topic, p.Props.TopicAlias, want.topic, want.alias)
		}
	}
}

// TestRequestProblemInformation: with 0, acknowledgements carry no Reason
// String or User Property (§3.1.2.11.7); DISCONNECT may.
func TestRequestProblemInformation(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "c", func(pk *packet.Connect) {
		pk.Props.RequestProblemInfo = 0
		pk.Props.Set(packet.PropRequestProblemInfo)
	})
	out := &packet.Ack{Kind: packet.PUBACK, PacketID: 1, Code: packet.NotAuthorized}
	out.Props.ReasonString = "why"
	out.Props.Set(packet.PropReasonString)
	cl := s.Client("c")
	cl.mu.Lock()
	conn := cl.conn
	cl.mu.Unlock()
	conn.send(out)
	if a := c.Read().(*packet.Ack); a.Props.Has(packet.PropReasonString) {
		t.Fatalf("%+v", a)
	}
}

// TestServerTopics: a client cannot publish to a '$' topic (§4.7.2); the
// server's $SYS figures reach a subscriber as retained messages.
func TestServerTopics(t *testing.T) {
	s := newServer(t, nil)
	s.auth.setGrants(topics.Grants{Allow: []string{"#", "$SYS/#"}})
	c, _ := s.connect(t, packet.V5, "c", nil)
	c.Send(&packet.Publish{QoS: 1, Topic: "$SYS/broker/clients/connected", PacketID: 1, Payload: []byte("999")})
	if a := c.Read().(*packet.Ack); a.Code != packet.NotAuthorized {
		t.Fatalf("%+v", a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.RunSys(ctx, time.Hour)
	eventually(t, "$SYS is published", func() bool { _, ok := s.retainedAt("$SYS/broker/clients/connected"); return ok })
	c.Subscribe(2, []packet.ReasonCode{0}, sub("$SYS/broker/clients/connected", 0))
	if p := c.Publication(); string(p.Payload) != "1" || !p.Retain {
		t.Fatalf("%+v", p)
	}
}

// TestSlowSubscriber: a subscriber that stops reading costs at most Queue
// QoS 0 messages; the rest are dropped and counted, and the publisher gets
// every PUBACK all the same.
func TestSlowSubscriber(t *testing.T) {
	s := newServer(t, func(c *Config) { c.Queue = 10 })
	slow, _ := s.connect(t, packet.V5, "slow", nil)
	slow.Subscribe(1, []packet.ReasonCode{0}, sub("t", 0))
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	payload := make([]byte, 16<<10)
	const n = 2000 // 32 MB: far more than the socket buffers take
	go func() {
		for i := range n {
			pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: uint16(i%60000 + 1), Payload: payload})
		}
	}()
	for range n {
		if _, ok := pub.Read().(*packet.Ack); !ok {
			t.Fatal("not a PUBACK")
		}
	}
	if s.Stats.Dropped.Load() == 0 {
		t.Fatal("nothing dropped for a subscriber that reads nothing")
	}
}

// TestManySubscriptions: 10,000 filters in one SUBSCRIBE, each answered.
func TestManySubscriptions(t *testing.T) {
	s := newServer(t, func(c *Config) { c.MaxPacketSize = 1 << 20 })
	c, _ := s.connect(t, packet.V5, "c", nil)
	var fs []packet.Subscription
	want := make([]packet.ReasonCode, 10_000)
	for i := range want {
		fs = append(fs, sub(fmt.Sprintf("deep/%d/+/#", i), 0))
	}
	c.Subscribe(1, want, fs...)
	if s.subs.Len() != 10_000 {
		t.Fatalf("%d subscriptions", s.subs.Len())
	}
}

// TestClientThatDoesNotRead: a client publishing at QoS 1 without reading
// its PUBACKs is slowed, not buffered for: after about Queue packets wait
// for it, the server stops reading from it. Over net.Pipe, which buffers
// nothing, the client's writes then block.
func TestClientThatDoesNotRead(t *testing.T) {
	s := newServer(t, func(c *Config) { c.Queue = 10 })
	client, server := net.Pipe()
	go s.ServeConn(server)
	c := mqtttest.New(t, client, packet.V5)
	c.Connect(&packet.Connect{CleanStart: true, ClientID: "deaf", PasswordFlag: true, Password: []byte("ok")})
	written := 0
	for i := range 1000 {
		b, _ := packet.Append(nil, packet.V5, &packet.Publish{QoS: 1, Topic: "t", PacketID: uint16(i + 1), Payload: []byte("x")})
		client.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := client.Write(b); err != nil {
			break
		}
		written++
	}
	if written == 1000 {
		t.Fatal("the server read 1,000 PUBLISH packets while none of their PUBACKs could be written")
	}
}

// TestFanInKeepsAcknowledged: publishers that do not wait for their
// PUBACKs outrun a subscriber that acknowledges every message; the
// subscriber's window (Config.Inflight) is flow control, so every message a
// publisher got a PUBACK for reaches the subscriber and nothing is dropped.
func TestFanInKeepsAcknowledged(t *testing.T) {
	const publishers, perPublisher = 4, 500
	s := newServer(t, func(c *Config) { c.Inflight = 8 })
	sub, _ := s.connect(t, packet.V5, "sub", nil)
	sub.Subscribe(1, []packet.ReasonCode{1}, mqtttest.Sub("t/+", 1))
	receive := func() *packet.Publish {
		p := sub.Publication()
		sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		return p
	}
	pubs := make([]*mqtttest.Conn, publishers)
	for i := range pubs {
		pubs[i], _ = s.connect(t, packet.V5, fmt.Sprintf("pub-%d", i), nil)
	}
	// The subscriber has acknowledged a message (the PINGRESP says the
	// server read the PUBACK before it): it keeps up.
	pubs[0].Send(&packet.Publish{QoS: 1, Topic: "t/0", PacketID: 1, Payload: []byte("first")})
	pubs[0].Read()
	receive()
	sub.Send(&packet.Ping{})
	sub.Read()

	var acked atomic.Int64
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Go(func() {
			for n := range perPublisher {
				b, _ := packet.Append(nil, packet.V5, &packet.Publish{QoS: 1, Topic: fmt.Sprintf("t/%d", i), PacketID: uint16(n + 1), Payload: []byte("x")})
				p.Write(b)
			}
		})
		wg.Go(func() {
			for range perPublisher {
				if _, err := p.ReadRaw(); err != nil {
					return
				}
				acked.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Once every PUBACK is in, every message is routed: what was not
	// dropped is on its way to the subscriber (before flow control, the
	// last ones dropped make the subscriber's read time out instead).
	const total = publishers * perPublisher
	received := 0
receiving:
	for received < total {
		select {
		case <-done:
			if received >= total-int(s.Stats.InflightDropped.Load()) {
				break receiving
			}
		default:
		}
		receive()
		received++
	}
	<-done
	if got := acked.Load(); got != total || received != total {
		t.Fatalf("%d messages acknowledged to publishers, %d received, want %d each (%d dropped)",
			got, received, total, s.Stats.InflightDropped.Load())
	}
}

// TestStalledSubscriberReleasesPublisher: a subscriber that acknowledged a
// message and then stops holds a publisher up once, for at most stallAfter;
// every PUBLISH is then acknowledged and what does not fit its window (twice
// Config.Inflight while it counted as keeping up) is dropped and counted.
func TestStalledSubscriberReleasesPublisher(t *testing.T) {
	s := newServer(t, func(c *Config) { c.Inflight = 4 })
	sub, _ := s.connect(t, packet.V5, "sub", nil)
	sub.Subscribe(1, []packet.ReasonCode{1}, mqtttest.Sub("t", 1))
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: 1, Payload: []byte("first")})
	pub.Read()
	sub.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: sub.Publication().PacketID})
	sub.Send(&packet.Ping{})
	sub.Read()

	const n = 20
	for i := range n {
		pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: uint16(i + 2), Payload: []byte("x")})
		if a, ok := pub.Read().(*packet.Ack); !ok || a.PacketID != uint16(i+2) {
			t.Fatalf("message %d: no PUBACK", i)
		}
	}
	if d := s.Stats.InflightDropped.Load(); d == 0 || d > n-4 {
		t.Fatalf("%d of %d dropped for a subscriber that stopped acknowledging", d, n)
	}
}
