package mqttnats

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// raw is an MQTT 5 client on thingid's own codec, for what paho does for
// its user: resending a QoS 2 PUBLISH and its PUBREL after a reconnection.
type raw struct {
	nc net.Conn
	r  *bufio.Reader
}

// rawDial connects id to n with a persistent session, resumed unless
// clean, and returns the CONNACK.
func rawDial(t testing.TB, n *node, id string, clean bool) (*raw, *packet.Connack) {
	t.Helper()
	cp := &packet.Connect{Version: packet.V5, CleanStart: clean, KeepAlive: 30, ClientID: id, UsernameFlag: true, Username: "user"}
	cp.Props.SessionExpiry = 3600
	cp.Props.Set(packet.PropSessionExpiry)
	return rawConnect(t, n, cp)
}

// rawConnect sends cp to n and returns the CONNACK, which must accept it.
func rawConnect(t testing.TB, n *node, cp *packet.Connect) (*raw, *packet.Connack) {
	t.Helper()
	nc, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &raw{nc: nc, r: bufio.NewReader(nc)}
	c.send(t, cp)
	ack, ok := c.next(t).(*packet.Connack)
	if !ok || ack.Code != packet.Success {
		t.Fatalf("CONNACK: %+v", ack)
	}
	return c, ack
}

// resume connects id to n again without a clean start: its session must
// be there.
func resume(t testing.TB, n *node, id string) *raw {
	t.Helper()
	c, ack := rawDial(t, n, id, false)
	if !ack.SessionPresent {
		t.Fatalf("the session of %q is not present on the node it resumed on", id)
	}
	return c
}

// publishQoS2 sends p (QoS 2) and completes it: PUBREC, PUBREL, PUBCOMP.
func (c *raw) publishQoS2(t testing.TB, p *packet.Publish) {
	t.Helper()
	c.send(t, p)
	c.expectAck(t, packet.PUBREC, p.PacketID, packet.Success)
	c.send(t, &packet.Ack{Kind: packet.PUBREL, PacketID: p.PacketID})
	c.expectAck(t, packet.PUBCOMP, p.PacketID, packet.Success)
}

func (c *raw) send(t testing.TB, p packet.Packet) {
	t.Helper()
	b, err := packet.Append(nil, packet.V5, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (c *raw) next(t testing.TB) packet.Packet {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := packet.ReadHeader(c.r)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, h.Remaining)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	p, err := packet.Decode(packet.V5, h, body, mqtt.DefaultMaxPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expectAck reads the next packet, which must be the acknowledgement kind
// of packet id with code.
func (c *raw) expectAck(t testing.TB, kind packet.Type, id uint16, code packet.ReasonCode) {
	t.Helper()
	a, ok := c.next(t).(*packet.Ack)
	if !ok || a.Kind != kind || a.PacketID != id || a.Code != code {
		t.Fatalf("got %+v, want %v %d with 0x%02x", a, kind, id, code)
	}
}

// TestQoS2PublisherAcrossNodeDeath: a QoS 2 message that node a routed
// and acknowledged with PUBREC, before the publisher's PUBREL, is not
// routed again when the publisher, resuming its session on node b after
// a died, sends the PUBLISH again (its PUBREC lost) and then the PUBREL,
// which b completes (§4.3.3): the subscriber gets it once.
func TestQoS2PublisherAcrossNodeDeath(t *testing.T) {
	url := natstest.Start(t)
	a, b := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second)
	sub := dial(t, b, "sub", "user")
	sub.subscribe(t, "t/#", 2)
	pub, _ := rawDial(t, a, "pub", true)
	publish := &packet.Publish{QoS: 2, Topic: "t/x", PacketID: 7, Payload: []byte("once")}
	pub.send(t, publish)
	pub.expectAck(t, packet.PUBREC, 7, packet.Success)
	sub.expect(t, "t/x", "once")
	a.crash()
	pub = resume(t, b, "pub")
	publish.Dup = true
	pub.publishQoS2(t, publish)
	marker := dial(t, b, "marker", "user")
	sub.expectNone(t, marker, "t/marker")
}

// TestQoS2SubscriberAcrossNodeDeath: of two QoS 2 messages node a sent a
// persistent subscriber, one it released (PUBREC came, PUBREL sent) and
// one the subscriber had not acknowledged, when a dies; the subscriber,
// resuming on node b, gets the PUBREL of the first and the second again
// as a duplicate under its packet identifier, never the first again nor
// either anew (§4.3.3, §4.4).
func TestQoS2SubscriberAcrossNodeDeath(t *testing.T) {
	url := natstest.Start(t)
	a, b := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second)
	sub, _ := rawDial(t, a, "sub", true)
	s := &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: "t/#", QoS: 2}}}
	sub.send(t, s)
	if ack, ok := sub.next(t).(*packet.SubAck); !ok || ack.Codes[0] != 2 {
		t.Fatalf("SUBACK: %+v", ack)
	}
	pub := dial(t, b, "pub", "user")
	got := map[string]*packet.Publish{}
	for _, body := range []string{"first", "second"} {
		pub.publish(t, &paho.Publish{Topic: "t/x", QoS: 2, Payload: []byte(body)})
		p, ok := sub.next(t).(*packet.Publish)
		if !ok || string(p.Payload) != body || p.QoS != 2 {
			t.Fatalf("got %+v, want %s at QoS 2", p, body)
		}
		got[body] = p
	}
	sub.send(t, &packet.Ack{Kind: packet.PUBREC, PacketID: got["first"].PacketID})
	sub.expectAck(t, packet.PUBREL, got["first"].PacketID, packet.Success)
	a.crash()
	sub = resume(t, b, "sub")
	sub.expectAck(t, packet.PUBREL, got["first"].PacketID, packet.Success)
	p, ok := sub.next(t).(*packet.Publish)
	if !ok || string(p.Payload) != "second" || !p.Dup || p.PacketID != got["second"].PacketID {
		t.Fatalf("got %+v, want the second message again with DUP and packet identifier %d", p, got["second"].PacketID)
	}
	sub.send(t, &packet.Ack{Kind: packet.PUBCOMP, PacketID: got["first"].PacketID})
	sub.send(t, &packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	sub.expectAck(t, packet.PUBREL, p.PacketID, packet.Success)
	sub.send(t, &packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	pub.publish(t, &paho.Publish{Topic: "t/marker", QoS: 1, Payload: []byte("marker")})
	if m, ok := sub.next(t).(*packet.Publish); !ok || m.Topic != "t/marker" {
		t.Fatalf("got %+v, want the marker", m)
	}
}

// dying is a node's store whose write of a publisher's QoS 2 packet
// identifier 7 never stands: the node dies after routing the message and
// before that write, the one order the record cannot tell.
type dying struct {
	*Sessions
	routed chan struct{} // closed when the write is reached
	dead   chan struct{} // closed by the test once the node is dead
	once   sync.Once
}

func (d *dying) PutSession(r *mqtt.SessionRecord, subs []topics.Subscription) error {
	if r.ClientID == "pub" && slices.Contains(r.Received, 7) {
		d.once.Do(func() { close(d.routed) })
		<-d.dead
		return errors.New("the node died before this write")
	}
	return d.Sessions.PutSession(r, subs)
}

// startDyingNode starts a live node whose store is d's.
func startDyingNode(t testing.TB, url, name string) (*node, *dying) {
	t.Helper()
	r, err := Dial(url, name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.NodeTTL = time.Second
	store, err := r.Sessions(mqtt.DefaultInflight, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := &dying{Sessions: store.(*Sessions), routed: make(chan struct{}), dead: make(chan struct{})}
	return serveNode(t, r, mqtt.Config{Identity: names{}, Store: d}, false), d
}

// TestQoS2RoutedOnceAcrossNodeDeath: node a routes a persistent
// publisher's QoS 2 message (delivered live to subscribers on nodes b and
// c, stored for an offline persistent session) and dies before writing
// its packet identifier in the publisher's record, so no PUBREC comes;
// the publisher, resuming on node b, sends the PUBREL of an earlier
// message and the PUBLISH again (§4.4), and b routes it: each subscriber
// still gets each message exactly once.
func TestQoS2RoutedOnceAcrossNodeDeath(t *testing.T) {
	url := natstest.Start(t)
	a, d := startDyingNode(t, url, "a")
	b, c := startLiveNode(t, url, "b", time.Second), startLiveNode(t, url, "c", time.Second)
	away := persistent(t, c, "away", true)
	away.subscribe(t, "t/#", 2)
	away.leave(t, c, "away")
	onB, onC := dial(t, b, "onB", "user"), dial(t, c, "onC", "user")
	onB.subscribe(t, "t/#", 2)
	onC.subscribe(t, "t/#", 2)
	pub, _ := rawDial(t, a, "pub", true)
	pub.send(t, &packet.Publish{QoS: 2, Topic: "t/x", PacketID: 6, Payload: []byte("before")})
	pub.expectAck(t, packet.PUBREC, 6, packet.Success)
	publish := &packet.Publish{QoS: 2, Topic: "t/x", PacketID: 7, Payload: []byte("once")}
	pub.send(t, publish)
	<-d.routed
	for _, body := range []string{"before", "once"} {
		onB.expect(t, "t/x", body)
		onC.expect(t, "t/x", body)
	}
	pub.nc.Close()
	a.router.nc.Close()
	close(d.dead)
	a.crash()

	pub = resume(t, b, "pub")
	// The PUBREL completes the first message, changing the record; the
	// PUBLISH sent again is still the second's first attempt.
	pub.send(t, &packet.Ack{Kind: packet.PUBREL, PacketID: 6})
	pub.expectAck(t, packet.PUBCOMP, 6, packet.Success)
	publish.Dup = true
	pub.publishQoS2(t, publish)
	marker := dial(t, b, "marker", "user")
	onB.expectNone(t, marker, "t/marker")
	onC.expectNone(t, marker, "t/marker")
	away = persistent(t, c, "away", false)
	away.expect(t, "t/x", "before")
	away.expect(t, "t/x", "once")
	away.expect(t, "t/marker", "marker")
	away.expect(t, "t/marker", "marker")
}

// TestQoS2PacketIDReusedAfterCompletion: a persistent publisher's next
// QoS 2 message under the packet identifier of one it completed (PUBCOMP)
// is a new message, delivered, not taken for the first sent again; so is
// another persistent publisher's under the same packet identifier, even
// sent as a duplicate.
func TestQoS2PacketIDReusedAfterCompletion(t *testing.T) {
	url := natstest.Start(t)
	a, b := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second)
	sub := dial(t, b, "sub", "user")
	sub.subscribe(t, "t/#", 2)
	pub, _ := rawDial(t, a, "pub", true)
	other, _ := rawDial(t, a, "other", true)
	for _, m := range []struct {
		c    *raw
		body string
		dup  bool
	}{{pub, "first", false}, {pub, "second", false}, {other, "other", true}} {
		m.c.publishQoS2(t, &packet.Publish{QoS: 2, Dup: m.dup, Topic: "t/x", PacketID: 7, Payload: []byte(m.body)})
		sub.expect(t, "t/x", m.body)
	}
}

// TestQoS2RoutedOnceSessionsMoved: the persistent subscribers of a QoS 2
// message that node a routed, connected to a, resume on node b after a
// died before writing the publisher's packet identifier, and so does the
// publisher, which sends the PUBLISH again to b. The subscriber that
// completed the message on a does not get it again, and the one that had
// not acknowledged it gets it again as a duplicate (§4.3.3) and no other
// copy: b's own routing of it finds their copies stored already.
func TestQoS2RoutedOnceSessionsMoved(t *testing.T) {
	url := natstest.Start(t)
	a, d := startDyingNode(t, url, "a")
	b := startLiveNode(t, url, "b", time.Second)
	done := persistent(t, a, "done", true)
	done.subscribe(t, "t/#", 2)
	open, _ := rawDial(t, a, "open", true)
	open.send(t, &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: "t/#", QoS: 2}}})
	if ack, ok := open.next(t).(*packet.SubAck); !ok || ack.Codes[0] != 2 {
		t.Fatalf("SUBACK: %+v", ack)
	}
	pub, _ := rawDial(t, a, "pub", true)
	publish := &packet.Publish{QoS: 2, Topic: "t/x", PacketID: 7, Payload: []byte("once")}
	pub.send(t, publish)
	<-d.routed
	done.expect(t, "t/x", "once")
	first, ok := open.next(t).(*packet.Publish)
	if !ok || string(first.Payload) != "once" {
		t.Fatalf("got %+v, want the message", first)
	}
	eventually(t, "the completed message left the queue", func() bool {
		_, err := a.router.sessions.stream.GetLastMsgForSubject(context.Background(), queuePrefix+"."+sessionKey("done"))
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	pub.nc.Close()
	a.router.nc.Close()
	close(d.dead)
	a.crash()

	done = persistent(t, b, "done", false)
	open, _ = rawDial(t, b, "open", false)
	again, ok := open.next(t).(*packet.Publish)
	if !ok || string(again.Payload) != "once" || !again.Dup || again.PacketID != first.PacketID {
		t.Fatalf("got %+v, want the message again with DUP and packet identifier %d", again, first.PacketID)
	}
	open.send(t, &packet.Ack{Kind: packet.PUBREC, PacketID: again.PacketID})
	open.expectAck(t, packet.PUBREL, again.PacketID, packet.Success)
	open.send(t, &packet.Ack{Kind: packet.PUBCOMP, PacketID: again.PacketID})
	pub, _ = rawDial(t, b, "pub", false)
	publish.Dup = true
	pub.publishQoS2(t, publish)
	marker := dial(t, b, "marker", "user")
	done.expectNone(t, marker, "t/marker")
	if m, ok := open.next(t).(*packet.Publish); !ok || m.Topic != "t/marker" {
		t.Fatalf("got %+v, want the marker", m)
	}
}
