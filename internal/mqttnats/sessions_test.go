package mqttnats

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/topics"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// startSessionNode starts a node keeping persistent sessions in the
// cluster, with at most inflight messages queued for one (0: the default).
func startSessionNode(t testing.TB, url, name string, inflight int) *node {
	t.Helper()
	return launch(t, url, name, mqtt.Config{Inflight: inflight}, true)
}

// crash ends a node as kill -9 would, as far as the cluster sees: its
// NATS connection drops first, so nothing it does after reaches the
// others, then its clients' connections.
func (n *node) crash() {
	n.once.Do(func() {
		n.ln.Close()
		n.router.nc.Close()
		n.srv.Close()
		n.wg.Wait()
	})
}

// persistent connects id to n with a session that outlives the
// connection (MQTT 5 Session Expiry Interval), resumed unless clean.
func persistent(t testing.TB, n *node, id string, clean bool) *client {
	t.Helper()
	return dialWith(t, n, persistentConnect(id, "user", clean))
}

// persistentConnect is the CONNECT of id as user with a session of an
// hour, resumed unless clean.
func persistentConnect(id, user string, clean bool) *paho.Connect {
	expiry := uint32(3600)
	return &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30, UsernameFlag: true, Username: user,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
}

// leave disconnects c normally, keeping its session, and waits for its
// node to see it away.
func (c *client) leave(t testing.TB, n *node, id string) {
	t.Helper()
	c.Disconnect(&paho.Disconnect{})
	eventually(t, "the session is away", func() bool {
		cl := n.srv.Client(id)
		return cl != nil && cl.Conn() == nil
	})
}

// TestSessionResumesOnAnotherNode: a session made on node a, away, gets
// what is published on node b meanwhile, and its client, connecting to
// node b, finds it there (session present) with its subscription and
// those messages.
func TestSessionResumesOnAnotherNode(t *testing.T) {
	url := natstest.Start(t)
	a, b := startSessionNode(t, url, "a", 0), startSessionNode(t, url, "b", 0)
	sub := persistent(t, a, "sub", true)
	if sub.ack.SessionPresent {
		t.Fatal("session present on a clean start")
	}
	sub.subscribe(t, "t/#", 1)
	sub.leave(t, a, "sub")
	pub := dial(t, b, "pub", "user")
	for i := range 5 {
		pub.publish(t, &paho.Publish{Topic: "t/" + strconv.Itoa(i), QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	sub = persistent(t, b, "sub", false)
	if !sub.ack.SessionPresent {
		t.Fatal("session not present on another node")
	}
	for i := range 5 {
		sub.expect(t, "t/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	// Its subscription came along: a live message reaches it on b, once.
	pub.publish(t, &paho.Publish{Topic: "t/live", QoS: 1, Payload: []byte("live")})
	sub.expect(t, "t/live", "live")
	sub.expectNone(t, pub, "t/marker")
	eventually(t, "node a let the session go", func() bool { return a.srv.Client("sub") == nil })
}

// TestSessionSurvivesItsNode: messages queued for an away session on
// node a, published on a and on b and acknowledged, reach its client on
// node c after node a crashed; none twice.
func TestSessionSurvivesItsNode(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startSessionNode(t, url, "a", 0), startSessionNode(t, url, "b", 0), startSessionNode(t, url, "c", 0)
	sub := persistent(t, a, "sub", true)
	sub.subscribe(t, "t/#", 1)
	sub.leave(t, a, "sub")
	onA, onB := dial(t, a, "pa", "user"), dial(t, b, "pb", "user")
	want := map[string]bool{}
	for i := range 10 {
		p := []byte(strconv.Itoa(i))
		onA.publish(t, &paho.Publish{Topic: "t/a", QoS: 1, Payload: p})
		onB.publish(t, &paho.Publish{Topic: "t/b", QoS: 1, Payload: p})
		want["t/a "+string(p)], want["t/b "+string(p)] = true, true
	}
	a.crash()
	sub = persistent(t, c, "sub", false)
	if !sub.ack.SessionPresent {
		t.Fatal("session not present after its node crashed")
	}
	for len(want) > 0 {
		select {
		case p := <-sub.received:
			k := p.Topic + " " + string(p.Payload)
			if !want[k] {
				t.Fatalf("%s received twice or never published", k)
			}
			delete(want, k)
		case <-time.After(10 * time.Second):
			t.Fatalf("not received: %v", want)
		}
	}
	sub.expectNone(t, onB, "t/marker")
}

// TestSessionTakeoverAcrossNodes: connecting on node b to a session
// connected on node a takes it over (§3.1.4: DISCONNECT 0x8E on a), with
// session present; node a writes nothing more for it, so messages come
// once, through b.
func TestSessionTakeoverAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startSessionNode(t, url, "a", 0), startSessionNode(t, url, "b", 0), startSessionNode(t, url, "c", 0)
	first := persistent(t, a, "dev", true)
	first.subscribe(t, "cmd/#", 1)
	second := persistent(t, b, "dev", false)
	first.takenOver(t)
	if !second.ack.SessionPresent {
		t.Fatal("session not present after a takeover across nodes")
	}
	eventually(t, "the session on node a ended", func() bool { return a.srv.Client("dev") == nil })
	pub := dial(t, c, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "cmd/x", QoS: 1, Payload: []byte("go")})
	second.expect(t, "cmd/x", "go")
	second.expectNone(t, pub, "cmd/marker")
	// And back to a: the claims order the moves, the subscription follows.
	third := persistent(t, a, "dev", false)
	second.takenOver(t)
	if !third.ack.SessionPresent {
		t.Fatal("session not present after moving back")
	}
	pub.publish(t, &paho.Publish{Topic: "cmd/y", QoS: 1, Payload: []byte("again")})
	third.expect(t, "cmd/y", "again")
	third.expectNone(t, pub, "cmd/marker")
}

// TestCleanStartEndsSessionAcrossNodes: a clean start on node b discards
// the session node a held (§3.1.2.4): no session present, its
// subscriptions and queued messages gone, on every node.
func TestCleanStartEndsSessionAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startSessionNode(t, url, "a", 0), startSessionNode(t, url, "b", 0)
	sub := persistent(t, a, "sub", true)
	sub.subscribe(t, "t/#", 1)
	sub.leave(t, a, "sub")
	pub := dial(t, b, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "t/old", QoS: 1, Payload: []byte("old")})
	sub = persistent(t, b, "sub", true)
	if sub.ack.SessionPresent {
		t.Fatal("session present on a clean start")
	}
	sub.subscribe(t, "u/#", 1)
	pub.publish(t, &paho.Publish{Topic: "t/new", QoS: 1, Payload: []byte("new")})
	sub.expectNone(t, pub, "u/marker")
	sub.leave(t, b, "sub")
	sub = persistent(t, a, "sub", false)
	if !sub.ack.SessionPresent {
		t.Fatal("the new session is not present on node a")
	}
	sub.expectNone(t, pub, "u/marker")
}

// TestSessionQueueFull: a session's queue holds twice Config.Inflight
// messages while nobody holds it; more are dropped and counted. Its client
// gets every one it holds, a window at a time.
func TestSessionQueueFull(t *testing.T) {
	url := natstest.Start(t)
	a, b := startSessionNode(t, url, "a", 3), startSessionNode(t, url, "b", 3)
	reg := prometheus.NewRegistry()
	if err := b.router.Register(reg); err != nil {
		t.Fatal(err)
	}
	sub := persistent(t, a, "sub", true)
	sub.subscribe(t, "t/#", 1)
	sub.leave(t, a, "sub")
	a.crash()
	pub := dial(t, b, "pub", "user")
	for i := range 8 {
		pub.publish(t, &paho.Publish{Topic: "t/x", QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	if got := counter(t, reg, "thingid_mqtt_cluster_session_queue_dropped_total"); got != 2 {
		t.Fatalf("dropped %v, want 2", got)
	}
	if got := counter(t, reg, "thingid_mqtt_cluster_sessions_held"); got != 0 {
		t.Fatalf("node b holds %v sessions before the client comes", got)
	}
	sub = persistent(t, b, "sub", false)
	if got := counter(t, reg, "thingid_mqtt_cluster_sessions_held"); got != 1 {
		t.Fatalf("node b holds %v sessions, want 1", got)
	}
	for i := range 6 {
		sub.expect(t, "t/x", strconv.Itoa(i))
	}
	// The queue takes the marker once the deletions of those six, on their
	// way (asynchronous), left room in it: on a loaded machine they can
	// lag behind the marker's publish, which the full queue then refuses.
	eventually(t, "the delivered messages left the queue", func() bool {
		_, err := b.router.sessions.stream.GetLastMsgForSubject(context.Background(), queuePrefix+"."+sessionKey("sub"))
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	sub.expectNone(t, pub, "t/marker")
}

// TestSessionRecordRefused: a record in a session's queue that does not
// decode, or names another session, is dropped and counted, and the
// session still gets the good ones.
func TestSessionRecordRefused(t *testing.T) {
	url := natstest.Start(t)
	a := startSessionNode(t, url, "a", 0)
	reg := prometheus.NewRegistry()
	if err := a.router.Register(reg); err != nil {
		t.Fatal(err)
	}
	sub := persistent(t, a, "sub", true)
	sub.subscribe(t, "t/#", 1)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subject := queuePrefix + "." + sessionKey("sub")
	for _, h := range []nats.Header{
		{hdrTopic: {"t/x"}, hdrQoS: {"1"}, hdrGranted: {"2"}, hdrClient: {"sub"}}, // granted above the message's QoS
		{hdrTopic: {"t/+"}, hdrQoS: {"1"}, hdrGranted: {"1"}, hdrClient: {"sub"}}, // no topic name
		{hdrTopic: {"t/x"}, hdrQoS: {"1"}, hdrGranted: {"1"}, hdrClient: {"other"}},
		{hdrTopic: {"t/x"}, hdrQoS: {"1"}, hdrGranted: {"1"}, hdrClient: {"sub"}, hdrSubIDs: {"0"}},
	} {
		if _, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: h, Data: []byte("bad")}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: nats.Header{hdrTopic: {"t/x"}, hdrQoS: {"1"}, hdrGranted: {"1"}, hdrClient: {"sub"}}, Data: []byte("good")}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sub.expect(t, "t/x", "good")
	if got := counter(t, reg, "thingid_mqtt_cluster_failed_total"); got != 4 {
		t.Fatalf("failed %v, want 4", got)
	}
}

// FuzzDecodeRecord: whatever a queue's record carries, decoding it
// returns a message with a valid topic and a granted QoS within the
// message's, or an error; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	f.Add("t/x", "1", "1", "1", []byte("p"))
	f.Add("t/+", "2", "1", "3,4", []byte{})
	f.Add("", "x", "", ",", []byte(nil))
	f.Fuzz(func(t *testing.T, topic, qos, granted, subIDs string, data []byte) {
		h := nats.Header{hdrTopic: {topic}, hdrQoS: {qos}, hdrGranted: {granted}, hdrSubIDs: {subIDs}}
		r, err := decodeRecord(h, data)
		if err != nil {
			return
		}
		if r.Message.Topic != topic || r.QoS < 1 || r.QoS > r.Message.QoS {
			t.Fatalf("decoded %+v from %q %q %q", r, topic, qos, granted)
		}
	})
}

// TestStaleNodeCannotOverwrite: a node that has not heard yet that its
// client moved (the announcement is late) can neither overwrite the newer
// node's record of the session nor delete it: the claims order writers.
func TestStaleNodeCannotOverwrite(t *testing.T) {
	url := natstest.Start(t)
	a, b := startSessionNode(t, url, "a", 0), startSessionNode(t, url, "b", 0)
	stale, fresh := a.router.sessions, b.router.sessions
	if err := fresh.PutSession(&mqtt.SessionRecord{ClientID: "dev", Expiry: time.Hour, Claim: 5}, []topics.Subscription{{Filter: "new/#", QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	err := stale.PutSession(&mqtt.SessionRecord{ClientID: "dev", Expiry: time.Hour, Claim: 3}, []topics.Subscription{{Filter: "old/#", QoS: 1}})
	if !errors.Is(err, errSuperseded) {
		t.Fatalf("the older claim's write: %v, want errSuperseded", err)
	}
	if n := a.router.heldSessions(); n != 0 {
		t.Fatalf("node a still holds %d sessions after its write was superseded", n)
	}
	eventually(t, "node a's mirror has node b's record", func() bool {
		stale.mu.Lock()
		defer stale.mu.Unlock()
		return stale.known[sessionKey("dev")] != nil
	})
	if err := stale.DeleteSession("dev"); err != nil {
		t.Fatal(err)
	}
	r, subs, err := fresh.Fetch("dev", false)
	if err != nil || r == nil || r.Claim != 5 || len(subs) != 1 || subs[0].Filter != "new/#" {
		t.Fatalf("node b's session after node a's stale writes: %+v %+v %v", r, subs, err)
	}
}
