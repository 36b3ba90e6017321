package mqtt

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

func persistent(expiry uint32) func(*packet.Connect) {
	return func(c *packet.Connect) {
		c.CleanStart = false
		withExpiry(expiry)(c)
	}
}

// withExpiry sets a CONNECT's Session Expiry Interval, in seconds.
func withExpiry(expiry uint32) func(*packet.Connect) {
	return func(c *packet.Connect) {
		c.Props.SessionExpiry = expiry
		c.Props.Set(packet.PropSessionExpiry)
	}
}

// reauthenticate re-authenticates c with testAuth's data ("ok", "narrow")
// and expects AUTH Success.
func reauthenticate(t *testing.T, c *mqtttest.Conn, data string) {
	t.Helper()
	a := &packet.Auth{Code: packet.ReAuthenticate}
	a.Props.AuthMethod, a.Props.AuthData = "m", []byte(data)
	a.Props.Set(packet.PropAuthMethod)
	a.Props.Set(packet.PropAuthData)
	c.Send(a)
	if got, ok := c.Read().(*packet.Auth); !ok || got.Code != packet.Success {
		t.Fatalf("re-authentication: %+v", got)
	}
}

// TestSessionResume: a persistent session keeps its subscriptions and the
// QoS 1 messages published while it was away, resends the one it had not
// acknowledged with DUP set (§4.4), and a clean start discards it all.
func TestSessionResume(t *testing.T) {
	s := newServer(t, nil)
	c, ack := s.connect(t, packet.V5, "p", persistent(60))
	if ack.SessionPresent {
		t.Fatal("session present on the first connection")
	}
	c.Subscribe(1, []packet.ReasonCode{1}, sub("t", 1))
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: 1, Payload: []byte("a")})
	pub.Read()
	unacked := c.Publication()
	c.Send(&packet.Disconnect{})
	eventually(t, "the session is away", func() bool { return s.Client("p").Conn() == nil })
	for i, m := range []string{"b", "c"} {
		pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: uint16(i + 2), Payload: []byte(m)})
		pub.Read()
	}

	c, ack = s.connect(t, packet.V5, "p", persistent(60))
	if !ack.SessionPresent {
		t.Fatal("no session present")
	}
	var got []string
	for range 3 {
		p := c.Publication()
		got = append(got, string(p.Payload))
		if string(p.Payload) == "a" && (!p.Dup || p.PacketID != unacked.PacketID) {
			t.Fatalf("resent %+v, want DUP with packet id %d", p, unacked.PacketID)
		}
		c.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("got %v", got)
	}
	c.Send(&packet.Disconnect{})
	eventually(t, "the session is away", func() bool { return s.Client("p").Conn() == nil })
	pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: 9, Payload: []byte("d")})
	pub.Read()

	c, ack = s.connect(t, packet.V5, "p", func(pk *packet.Connect) { pk.CleanStart = true })
	if ack.SessionPresent {
		t.Fatal("session present after a clean start")
	}
	c.Send(&packet.Ping{})
	if p, ok := c.Read().(*packet.Ping); !ok {
		t.Fatalf("the discarded session's message arrived: %+v", p)
	}
}

// TestResumeAsksAuth is part of issue 16 item 5: messages queued for a
// session are delivered only if the identity that comes back may read
// them, through the same Deliver check as live ones.
func TestResumeAsksAuth(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "p", persistent(60))
	c.Subscribe(1, []packet.ReasonCode{1}, sub("things/#", 1))
	c.Send(&packet.Disconnect{})
	eventually(t, "the session is away", func() bool { return s.Client("p").Conn() == nil })
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	for i, topic := range []string{"things/a", "things/b"} {
		pub.Send(&packet.Publish{QoS: 1, Topic: topic, PacketID: uint16(i + 1), Payload: []byte("x")})
		pub.Read()
	}
	s.auth.setGrants(topics.Grants{Allow: []string{"#"}, Deny: []string{"things/a"}})
	c, _ = s.connect(t, packet.V5, "p", persistent(60))
	if p := c.Publication(); p.Topic != "things/b" {
		t.Fatalf("got %s; things/a is no longer allowed", p.Topic)
	}
}

// TestTakeover: a second connection with the client identifier takes the
// session; the first gets DISCONNECT 0x8E (MQTT 5) or is closed (3.1.1).
func TestTakeover(t *testing.T) {
	s := newServer(t, nil)
	first, _ := s.connect(t, packet.V5, "same", persistent(60))
	first.Subscribe(1, []packet.ReasonCode{0}, sub("t", 0))
	second, ack := s.connect(t, packet.V5, "same", persistent(60))
	first.Disconnected(packet.SessionTakenOver)
	if !ack.SessionPresent {
		t.Fatal("the taken-over session was not present")
	}
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	pub.Send(&packet.Publish{Topic: "t", Payload: []byte("x")})
	if p := second.Publication(); string(p.Payload) != "x" {
		t.Fatalf("got %+v", p)
	}

	old, _ := s.connect(t, packet.V311, "v3", nil)
	s.connect(t, packet.V311, "v3", nil)
	old.Closed()
}

// TestTakeoverOvertaken: the taken-over connection's end runs between
// the takeover detaching it and the session's end (the order a loaded
// machine found now and then, issue 16). A clean start ends the session,
// so the will goes whatever its delay; a resumed session keeps it from a
// delayed will (§3.1.4, §3.1.3.2.2). The new connection gets the session
// once: one session, one connection counted.
func TestTakeoverOvertaken(t *testing.T) {
	s := newServer(t, nil)
	watcher, _ := s.connect(t, packet.V5, "w", nil)
	watcher.Subscribe(1, []packet.ReasonCode{0}, sub("will/#", 0))
	for _, tc := range []struct {
		clean, published bool
	}{{clean: true, published: true}, {clean: false, published: false}} {
		id := fmt.Sprintf("dev-clean-%v", tc.clean)
		first, held := s.connectHeld(t, id, func(c *packet.Connect) {
			persistent(60)(c)
			c.Will = &packet.Will{Topic: "will/" + id, Payload: []byte("gone")}
			c.Will.Props.WillDelay = 60
			c.Will.Props.Set(packet.PropWillDelay)
		})
		_, ack := s.connect(t, packet.V5, id, func(c *packet.Connect) {
			persistent(60)(c)
			c.CleanStart = tc.clean
		})
		if err := held.err(); err != nil {
			t.Fatal(err)
		}
		if !held.released.Load() {
			t.Fatal("the takeover did not wait for the connection's writer: the order was not forced")
		}
		if p, ok := first.Read().(*packet.Ping); !ok || !p.Response {
			t.Fatalf("got %+v, want the PINGRESP held", p)
		}
		first.Disconnected(packet.SessionTakenOver)
		if ack.SessionPresent == tc.clean {
			t.Fatalf("clean start %v: session present %v", tc.clean, ack.SessionPresent)
		}
		if !tc.published {
			// Nothing before a marker published after the takeover.
			pub, _ := s.connect(t, packet.V5, "pub", nil)
			pub.Send(&packet.Publish{Topic: "will/marker", Payload: []byte("marker")})
		}
		want := map[bool]string{true: "will/" + id, false: "will/marker"}[tc.published]
		if p := watcher.Publication(); p.Topic != want {
			t.Fatalf("clean start %v: got %s, want %s", tc.clean, p.Topic, want)
		}
	}
	if n, c := s.Stats.Sessions.Load(), s.Stats.Connected.Load(); n != 4 || c != 4 {
		t.Fatalf("%d sessions, %d connections; want 4 of each (w, pub, and each id once)", n, c)
	}
}

// connectHeld connects id over a heldConn and returns once the server's
// writer is held writing the PINGRESP to a PINGREQ.
func (s *server) connectHeld(t *testing.T, id string, mod func(*packet.Connect)) (*mqtttest.Conn, *heldConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := &heldConn{s: s.Server, held: make(chan struct{}), release: make(chan struct{})}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		h.Conn = nc
		s.ServeConn(h)
	}()
	c := mqtttest.Dial(t, ln.Addr().String(), packet.V5)
	pk := &packet.Connect{CleanStart: true, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")}
	mod(pk)
	c.Connect(pk)
	h.armed.Store(true)
	c.Send(&packet.Ping{})
	<-h.held
	return c, h
}

// heldConn holds the server's next Write once armed, so that a takeover
// meanwhile finds the connection's writer running and sets the write
// deadline (shutdown) after queueing its DISCONNECT; the writer, held, sets
// none. There, on the goroutine taking the session over, it lets the write
// go and waits for the connection's end, which the closing after the
// DISCONNECT's write starts.
type heldConn struct {
	net.Conn
	s        *Server
	armed    atomic.Bool   // the next Write is held
	held     chan struct{} // closed once a Write is held
	release  chan struct{} // closed to let it go
	released atomic.Bool
	failed   atomic.Pointer[string]
}

func (h *heldConn) Write(b []byte) (int, error) {
	if h.armed.CompareAndSwap(true, false) {
		close(h.held)
		<-h.release
	}
	return h.Conn.Write(b)
}

func (h *heldConn) SetWriteDeadline(d time.Time) error {
	select {
	case <-h.held:
		if h.released.CompareAndSwap(false, true) {
			close(h.release)
			h.waitEnd()
		}
	default:
	}
	return h.Conn.SetWriteDeadline(d)
}

// waitEnd waits until the server dropped the connection (finish, after
// end), for 10 s at most.
func (h *heldConn) waitEnd() {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		h.s.mu.RLock()
		open := false
		for c := range h.s.conns {
			open = open || c.nc == h
		}
		h.s.mu.RUnlock()
		if !open {
			return
		}
		if time.Now().After(deadline) {
			msg := "the taken-over connection did not end while the takeover waited"
			h.failed.Store(&msg)
			return
		}
	}
}

func (h *heldConn) err() error {
	if msg := h.failed.Load(); msg != nil {
		return errors.New(*msg)
	}
	return nil
}

// TestWill: sent when the connection ends without DISCONNECT, or with
// DISCONNECT 0x04, never after a normal DISCONNECT; with a delay, not when
// the client is back in time (§3.1.3.2.2); and only to a topic the client
// may publish to when it is sent (issue 16 item 5).
func TestWill(t *testing.T) {
	s := newServer(t, nil)
	s.auth.setGrants(topics.Grants{Allow: []string{"#"}})
	watcher, _ := s.connect(t, packet.V5, "w", nil)
	watcher.Subscribe(1, []packet.ReasonCode{0, 0}, sub("will/#", 0), sub("secret/#", 0))
	withWill := func(topic string, delay uint32, expiry uint32) func(*packet.Connect) {
		return func(c *packet.Connect) {
			c.Will = &packet.Will{Topic: topic, Payload: []byte("gone " + topic)}
			if delay > 0 {
				c.Will.Props.WillDelay = delay
				c.Will.Props.Set(packet.PropWillDelay)
				persistent(expiry)(c)
			}
		}
	}
	a, _ := s.connect(t, packet.V5, "a", withWill("will/a", 0, 0))
	a.NC.Close()
	if p := watcher.Publication(); p.Topic != "will/a" {
		t.Fatalf("got %+v", p)
	}

	b, _ := s.connect(t, packet.V5, "b", withWill("will/b", 0, 0))
	b.Send(&packet.Disconnect{})
	c, _ := s.connect(t, packet.V5, "c", withWill("will/c", 0, 0))
	c.Send(&packet.Disconnect{Code: packet.DisconnectWithWill})
	if p := watcher.Publication(); p.Topic != "will/c" {
		t.Fatalf("got %+v, want will/c and not will/b", p)
	}

	d, _ := s.connect(t, packet.V5, "d", withWill("will/d", 60, 60))
	d.NC.Close()
	eventually(t, "d is away", func() bool { return s.Client("d").Conn() == nil })
	s.connect(t, packet.V5, "d", persistent(60)) // back before the delay: no will

	s.auth.setGrants(topics.Grants{Allow: []string{"#"}, Deny: []string{"secret/#"}})
	e, _ := s.connect(t, packet.V5, "e", withWill("secret/e", 0, 0))
	e.NC.Close()
	eventually(t, "e is gone", func() bool { return s.Client("e") == nil })
	f, _ := s.connect(t, packet.V5, "f", withWill("will/f", 1, 1))
	f.NC.Close()
	if p := watcher.Publication(); p.Topic != "will/f" {
		t.Fatalf("got %+v; want will/f after its delay, and neither d's nor the denied secret/e", p)
	}
}

// TestRetained: a retained message goes to new subscriptions with RETAIN
// set, per Retain Handling, never to a denied subscriber; an empty one
// clears it (§3.3.1.3).
func TestRetained(t *testing.T) {
	s := newServer(t, nil)
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	pub.Send(&packet.Publish{QoS: 1, Retain: true, Topic: "r/1", PacketID: 1, Payload: []byte("one")})
	pub.Read()
	c, _ := s.connect(t, packet.V5, "c", nil)
	c.Subscribe(1, []packet.ReasonCode{1}, sub("r/+", 1))
	p := c.Publication()
	if !p.Retain || string(p.Payload) != "one" || p.QoS != 1 {
		t.Fatalf("got %+v", p)
	}
	c.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	// Retain Handling 1: only for a new subscription; 2: never.
	c.Subscribe(2, []packet.ReasonCode{1}, packet.Subscription{Filter: "r/+", QoS: 1, RetainHandling: 1})
	c.Subscribe(3, []packet.ReasonCode{0}, packet.Subscription{Filter: "r/#", RetainHandling: 2})
	c.Send(&packet.Ping{})
	if p, ok := c.Read().(*packet.Ping); !ok {
		t.Fatalf("a retained message against Retain Handling: %+v", p)
	}
	// A live message keeps RETAIN only with Retain As Published.
	pub.Send(&packet.Publish{Retain: true, Topic: "r/1", Payload: []byte("two")})
	if p := c.Publication(); p.Retain {
		t.Fatalf("without Retain As Published: %+v", p)
	}
	c.Subscribe(4, []packet.ReasonCode{0}, packet.Subscription{Filter: "r/1", RetainAsPublished: true, RetainHandling: 2})
	pub.Send(&packet.Publish{Retain: true, Topic: "r/1", Payload: []byte("three")})
	if p := c.Publication(); !p.Retain {
		t.Fatalf("with Retain As Published: %+v", p)
	}
	pub.Send(&packet.Publish{Retain: true, Topic: "r/1"})
	if p := c.Publication(); p.Retain && len(p.Payload) != 0 {
		t.Fatalf("%+v", p)
	}
	if s.retained.Len() != 0 {
		t.Fatal("an empty retained message did not clear the topic")
	}
}

// TestQoS2Replay: a QoS 2 PUBLISH repeated before PUBREL is acknowledged
// again and delivered once (§4.3.3); more unreleased than the Receive
// Maximum announced ends the connection with 0x93.
func TestQoS2Replay(t *testing.T) {
	s := newServer(t, func(c *Config) { c.ReceiveMaximum = 3 })
	c, _ := s.connect(t, packet.V5, "c", nil)
	c.Subscribe(1, []packet.ReasonCode{0}, sub("t", 0))
	pub, ack := s.connect(t, packet.V5, "pub", nil)
	if ack.Props.ReceiveMaximum != 3 {
		t.Fatalf("CONNACK %+v", ack.Props)
	}
	for range 3 {
		pub.Send(&packet.Publish{QoS: 2, Dup: true, Topic: "t", PacketID: 5, Payload: []byte("once")})
		if a := pub.Read().(*packet.Ack); a.Kind != packet.PUBREC || a.PacketID != 5 {
			t.Fatalf("%+v", a)
		}
	}
	c.Publication()
	c.Send(&packet.Ping{})
	if p, ok := c.Read().(*packet.Ping); !ok {
		t.Fatalf("delivered twice: %+v", p)
	}
	pub.Send(&packet.Ack{Kind: packet.PUBREL, PacketID: 5})
	pub.Read()
	for id := range uint16(4) {
		pub.Send(&packet.Publish{QoS: 2, Topic: "t", PacketID: 10 + id, Payload: []byte("x")})
		if id < 3 {
			pub.Read()
		}
	}
	pub.Disconnected(packet.ReceiveMaximumExceeded)
}

// TestInflightFull: a subscriber that acknowledges nothing holds at most
// Config.Inflight messages; the rest are dropped and counted, and the
// publisher is never held up.
func TestInflightFull(t *testing.T) {
	s := newServer(t, func(c *Config) { c.Inflight = 3 })
	c, _ := s.connect(t, packet.V5, "c", nil)
	c.Subscribe(1, []packet.ReasonCode{1}, sub("t", 1))
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	for i := range 10 {
		pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: uint16(i + 1), Payload: []byte("x")})
		pub.Read()
	}
	if got := s.Stats.InflightDropped.Load(); got != 7 {
		t.Fatalf("dropped %d, want 7", got)
	}
	ids := map[uint16]bool{}
	for range 3 {
		ids[c.Publication().PacketID] = true
	}
	if len(ids) != 3 {
		t.Fatalf("packet identifiers %v", ids)
	}
}

// TestAliasAsksAuth is part of issue 16 item 5: a topic alias stands for
// its topic in every check.
func TestAliasAsksAuth(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "c", nil)
	withAlias := func(topic string) *packet.Publish {
		p := &packet.Publish{QoS: 1, Topic: topic, PacketID: 1, Payload: []byte("x")}
		p.Props.TopicAlias = 1
		p.Props.Set(packet.PropTopicAlias)
		return p
	}
	c.Send(withAlias("secret/x"))
	if a := c.Read().(*packet.Ack); a.Code != packet.NotAuthorized {
		t.Fatalf("%+v", a)
	}
	c.Send(withAlias("")) // the alias still stands for secret/x
	if a := c.Read().(*packet.Ack); a.Code != packet.NotAuthorized {
		t.Fatalf("%+v", a)
	}
}

// TestSubscriptionOptions: identifiers, No Local, shared groups in turn.
func TestSubscriptionOptions(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "c", nil)
	c.Send(&packet.Subscribe{PacketID: 1, Props: packet.Properties{SubscriptionIDs: []int{42}},
		Filters: []packet.Subscription{{Filter: "o/+", NoLocal: true}}})
	c.Read()
	c.Send(&packet.Publish{Topic: "o/x", Payload: []byte("mine")})
	d, _ := s.connect(t, packet.V5, "d", nil)
	d.Send(&packet.Publish{Topic: "o/x", Payload: []byte("theirs")})
	if p := c.Publication(); string(p.Payload) != "theirs" || !slices.Equal(p.Props.SubscriptionIDs, []int{42}) {
		t.Fatalf("got %+v", p)
	}
	d.Subscribe(1, []packet.ReasonCode{0}, sub("$share/g/s", 0))
	c.Subscribe(2, []packet.ReasonCode{0, packet.TopicFilterInvalid}, sub("$share/g/s", 0), sub("a/#/b", 0))
	for range 2 {
		c.Send(&packet.Publish{Topic: "s", Payload: []byte("x")})
	}
	c.Publication()
	d.Publication()
}

// TestClosingConnectionKeepsMessages: a QoS 1 message routed to a session
// whose connection is closing (the client just sent DISCONNECT) stays in
// the session to be resent, rather than being lost with the connection.
func TestClosingConnectionKeepsMessages(t *testing.T) {
	s := newServer(t, nil)
	cl := &Client{ID: "x", srv: s.Server}
	cl.setConn(&conn{srv: s.Server, version: packet.V5, sendQuota: 10, closing: true})
	cl.deliver(&Message{Topic: "t", QoS: 1, Payload: []byte("m")}, 1, false, nil, &batch{})
	if n := inflight(cl); n != 1 || s.Stats.Dropped.Load() != 0 {
		t.Fatalf("in flight %d, dropped %d", n, s.Stats.Dropped.Load())
	}
}

// TestRefusedWill: a client refused at CONNECT has no will: nothing it
// sent is published.
func TestRefusedWill(t *testing.T) {
	s := newServer(t, nil)
	w, _ := s.connect(t, packet.V5, "w", nil)
	w.Subscribe(1, []packet.ReasonCode{0}, sub("will/#", 0))
	c := s.dial(t, packet.V5)
	c.Send(&packet.Connect{Version: packet.V5, ClientID: "bad", CleanStart: true, PasswordFlag: true, Password: []byte("wrong"),
		Will: &packet.Will{Topic: "will/bad", Payload: []byte("published by nobody")}})
	if a := c.Read().(*packet.Connack); a.Code != packet.BadUserNameOrPassword {
		t.Fatalf("%+v", a)
	}
	c.Closed()
	w.Send(&packet.Ping{})
	if got := w.Read(); got.Type() != packet.PINGRESP {
		t.Fatalf("a refused client's will was published: %+v", got)
	}
}

// TestConnectUndecided: a CONNECT that Auth cannot decide (its store is
// unreachable) is refused with 0x88 and a reason that tells the client
// nothing of the server's inside (the error is logged).
func TestConnectUndecided(t *testing.T) {
	s := newServer(t, nil)
	c := s.dial(t, packet.V5)
	c.Send(&packet.Connect{Version: packet.V5, ClientID: "c", CleanStart: true, UsernameFlag: true, Username: storeDown})
	a, ok := c.Read().(*packet.Connack)
	if !ok || a.Code != packet.ServerUnavailable || strings.Contains(a.Props.ReasonString, "10.1.2.3") || a.Props.ReasonString == "" {
		t.Fatalf("CONNACK %+v", a)
	}
	c.Closed()
}

// TestConnDuringConnect: Auth sees the connection of the client it decides
// on (the broker reads its TLS certificates there).
func TestConnDuringConnect(t *testing.T) {
	s := newServer(t, nil)
	var seen net.Conn
	s.auth.setOnConnect(func(c *Client) { seen = c.Conn() })
	s.connect(t, packet.V5, "c", nil)
	if seen == nil {
		t.Fatal("Conn() was nil during Auth.Connect")
	}
}

// TestRevokedWill: a session the server discards (a revocation) ends
// without its will; one it only disconnects sends it.
func TestRevokedWill(t *testing.T) {
	s := newServer(t, nil)
	w, _ := s.connect(t, packet.V5, "w", nil)
	w.Subscribe(1, []packet.ReasonCode{0}, sub("will/#", 0))
	revoked, _ := s.connect(t, packet.V5, "revoked", willOn("will/revoked"))
	s.Disconnect("revoked", packet.NotAuthorized, "revoked", true)
	revoked.Disconnected(packet.NotAuthorized)
	kicked, _ := s.connect(t, packet.V5, "kicked", willOn("will/kicked"))
	s.Disconnect("kicked", packet.AdministrativeAction, "", false)
	kicked.Disconnected(packet.AdministrativeAction)
	if p := w.Publication(); p.Topic != "will/kicked" {
		t.Fatalf("got %s; want will/kicked and not will/revoked", p.Topic)
	}
}

// TestDisconnectIdentity: what the server decided about the identity a
// session had (its token expired, its grant was revoked) does not end the
// connection that took the client identifier over since as another
// identity, nor discard its session or its will; the identity it has now
// is ended.
func TestDisconnectIdentity(t *testing.T) {
	s := newServer(t, nil)
	w, _ := s.connect(t, packet.V5, "w", nil)
	w.Subscribe(1, []packet.ReasonCode{0}, sub("will/#", 0))
	old, _ := s.connect(t, packet.V5, "id", nil)
	first, second := s.Client("id").Identity(), new(int)
	s.auth.setOnConnect(func(c *Client) { c.SetIdentity(second) })
	c, _ := s.connect(t, packet.V5, "id", willOn("will/id"))
	old.Disconnected(packet.SessionTakenOver)
	for _, discard := range []bool{false, true} {
		if s.DisconnectIdentity("id", first, packet.MaximumConnectTime, "the token expired", discard) {
			t.Errorf("discard %v: the identity before the takeover was ended", discard)
		}
	}
	c.Send(&packet.Ping{})
	if got := c.Read(); got.Type() != packet.PINGRESP {
		t.Fatalf("the connection that took over: %+v", got)
	}
	if !s.DisconnectIdentity("id", second, packet.MaximumConnectTime, "the token expired", false) {
		t.Error("the identity connected now was not ended")
	}
	c.Disconnected(packet.MaximumConnectTime)
	if p := w.Publication(); p.Topic != "will/id" {
		t.Fatalf("got %s; want the will kept through the refused discard", p.Topic)
	}
}

// TestResumeRacingSessionEnd: a connection whose session has no expiry
// ends while another connection resumes that session (Clean Start 0):
// whichever comes first, the new connection ends up with a live session
// of its own, never attached to the one being ended.
func TestResumeRacingSessionEnd(t *testing.T) {
	s := newServer(t, nil)
	for round := range 100 {
		id := fmt.Sprint("end-", round)
		old, _ := s.connect(t, packet.V5, id, nil) // session expiry 0
		c := s.dial(t, packet.V5)
		go old.NC.Close()
		c.Connect(&packet.Connect{Version: packet.V5, ClientID: id, KeepAlive: 30,
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")})
		c.Send(&packet.Ping{})
		if got := c.Read(); got.Type() != packet.PINGRESP {
			t.Fatalf("round %d: %+v", round, got)
		}
		if cl := s.Client(id); cl == nil || cl.Conn() == nil {
			t.Fatalf("round %d: the connection that resumed has no live session", round)
		}
		c.NC.Close()
	}
}

// TestReplaceSession: Auth can have a client identifier's session ended
// rather than resumed: the new connection starts clean, Session Present 0.
func TestReplaceSession(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "id", persistent(600))
	c.Subscribe(1, []packet.ReasonCode{0}, sub("t", 0))
	s.auth.setOnConnect(func(c *Client) { c.ReplaceSession() })
	_, ack := s.connect(t, packet.V5, "id", persistent(600))
	c.Disconnected(packet.SessionTakenOver)
	if ack.SessionPresent || s.subs.Len() != 0 {
		t.Fatalf("session present %v, %d subscriptions inherited", ack.SessionPresent, s.subs.Len())
	}
}

// TestShutdown: closing the server tells MQTT 5 clients why (0x8B) and
// closes 3.1.1 connections without a word.
func TestShutdown(t *testing.T) {
	s := newServer(t, nil)
	c5, _ := s.connect(t, packet.V5, "five", nil)
	c3, _ := s.connect(t, packet.V311, "three", nil)
	s.Close()
	c5.Disconnected(packet.ServerShuttingDown)
	c3.Closed()
}

// TestSessionExpiry: an away session ends when its expiry interval has
// passed, its subscriptions with it.
func TestSessionExpiry(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "brief", persistent(1))
	c.Subscribe(1, []packet.ReasonCode{0}, sub("t", 0))
	c.Send(&packet.Disconnect{})
	c.Closed()
	eventually(t, "the session expired", func() bool { return s.Client("brief") == nil && s.subs.Len() == 0 })
}

// TestRetainedExpiry: a retained message past its Message Expiry Interval
// goes to no new subscriber and leaves the store (§3.3.2.3.3).
func TestRetainedExpiry(t *testing.T) {
	s := newServer(t, nil)
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	p := &packet.Publish{Retain: true, Topic: "r/short", Payload: []byte("soon gone")}
	p.Props.MessageExpiry = 1
	p.Props.Set(packet.PropMessageExpiry)
	pub.Send(p)
	pub.Send(&packet.Publish{Retain: true, Topic: "r/long", Payload: []byte("kept")})
	eventually(t, "both are retained", func() bool { return s.retained.Len() == 2 })
	time.Sleep(1100 * time.Millisecond)
	c, _ := s.connect(t, packet.V5, "c", nil)
	c.Subscribe(1, []packet.ReasonCode{0}, sub("r/#", 0))
	if got := c.Publication(); got.Topic != "r/long" {
		t.Fatalf("got %s", got.Topic)
	}
	if s.retained.Len() != 1 {
		t.Fatalf("%d retained", s.retained.Len())
	}
}

// TestPacketIDExhaustion: with all 65,535 packet identifiers in flight to
// a client, one more message is dropped and counted (Config.Inflight at its
// largest); the identifier an acknowledgement frees is the next one used,
// after the counter wraps past 0.
func TestPacketIDExhaustion(t *testing.T) {
	s := newServer(t, func(c *Config) { c.Inflight = 65535 })
	cl := &Client{ID: "x", srv: s.Server}
	// A closing connection queues nothing: the messages stay in flight.
	cl.setConn(&conn{srv: s.Server, version: packet.V5, sendQuota: 65535, closing: true})
	m := &Message{Topic: "t", QoS: 1}
	for range 65535 {
		cl.deliver(m, 1, false, nil, &batch{})
	}
	cl.deliver(m, 1, false, nil, &batch{}) // beyond Config.Inflight: dropped
	if inflight(cl) != 65535 || s.Stats.InflightDropped.Load() != 1 {
		t.Fatalf("in flight %d, dropped %d", inflight(cl), s.Stats.InflightDropped.Load())
	}
	cl.acked(&packet.Ack{Kind: packet.PUBACK, PacketID: 7})
	cl.deliver(m, 1, false, nil, &batch{})
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if o := cl.inflight[7]; o == nil || o.seq != 65536 {
		t.Fatalf("identifier 7 holds %+v, want the newest message", o)
	}
}

// elsewhere is a Remote whose claims interleave with another node's: while
// a connection here claims its client identifier (ours), the other node's
// announcement of its own claim (theirs) arrives, before the connection
// attaches.
type elsewhere struct {
	srv          *Server
	ours, theirs uint64
}

func (e *elsewhere) Forward(*Message) {}
func (e *elsewhere) Shared(string)    {}
func (e *elsewhere) Interest(string)  {}
func (e *elsewhere) Claim(id string, _ bool) (uint64, error) {
	e.srv.Supersede(id, e.theirs, true)
	return e.ours, nil
}

// TestClaimOvertaken: a newer claim announced while a connection waits
// for its own ends it once attached (§3.1.4: the newest connection stays,
// on the other node); an older one leaves it.
func TestClaimOvertaken(t *testing.T) {
	for _, tc := range []struct {
		ours, theirs uint64
		ended        bool
	}{{ours: 1, theirs: 2, ended: true}, {ours: 3, theirs: 2, ended: false}} {
		remote := &elsewhere{ours: tc.ours, theirs: tc.theirs}
		s := newServer(t, func(c *Config) { c.Remote = remote })
		remote.srv = s.Server
		c, ack := s.connect(t, packet.V5, "dev", nil)
		if ack.Code != packet.Success {
			t.Fatalf("CONNACK 0x%02x", ack.Code)
		}
		if tc.ended {
			c.Disconnected(packet.SessionTakenOver)
			eventually(t, "the session ended", func() bool { return s.Client("dev") == nil })
			continue
		}
		c.Send(&packet.Ping{})
		if p, ok := c.Read().(*packet.Ping); !ok || !p.Response {
			t.Fatal("the connection with the newer claim ended")
		}
	}
}
