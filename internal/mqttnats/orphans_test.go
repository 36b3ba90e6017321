package mqttnats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// names is the test's IdentityCodec: an identity is its user name.
type names struct{}

func (names) EncodeIdentity(v any) []byte { s, _ := v.(string); return []byte(s) }
func (names) DecodeIdentity(b []byte) (any, error) {
	return string(b), nil
}

// startLiveNode starts a node keeping persistent sessions in the cluster
// whose liveness key lives ttl: its sessions move that long after it died.
func startLiveNode(t testing.TB, url, name string, ttl time.Duration) *node {
	t.Helper()
	r, err := Dial(url, name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.NodeTTL = ttl
	return serveNode(t, r, mqtt.Config{Identity: names{}}, true)
}

// withWill connects id as user to n with a persistent session (expiry
// seconds) and a will on topic published delay seconds after its
// connection ends.
func withWill(t testing.TB, n *node, id, user, topic string, expiry, delay uint32) *client {
	t.Helper()
	return dialWith(t, n, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: user,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("gone " + id)},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}})
}

// recorded waits until n's mirror of the bucket has id's session with a
// will (written at CONNECT, after the CONNACK).
func recorded(t testing.TB, n *node, id string) {
	t.Helper()
	s := n.router.sessions
	eventually(t, id+"'s will in the bucket", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		e := s.known[sessionKey(id)]
		return e != nil && e.Record.Will != nil
	})
}

// holderOf is the node of nodes whose server holds id's session, nil for
// none, and fails the test for more than one.
func holderOf(t testing.TB, id string, nodes ...*node) *node {
	t.Helper()
	var found *node
	for _, n := range nodes {
		if n.srv.Client(id) != nil {
			if found != nil {
				t.Fatalf("nodes %s and %s both hold %s", found.router.node, n.router.node, id)
			}
			found = n
		}
	}
	return found
}

// TestWillOfEndedNode: the wills of sessions whose node died are published
// by one of the two nodes left, each once (they race for every session),
// after its delay, as their owners' publishes: the one whose owner may not
// publish to its topic is not.
func TestWillOfEndedNode(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second), startLiveNode(t, url, "c", time.Second)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	watch.subscribe(t, "secret/#", 1)
	const n = 10
	for i := range n {
		id := fmt.Sprintf("dev%d", i)
		withWill(t, a, id, "user", "will/"+id, 3600, uint32(i%2)) // half of them with a delay
		recorded(t, b, id)
	}
	withWill(t, a, "spy", "restricted", "secret/spy", 3600, 0)
	recorded(t, b, "spy")
	a.crash()
	want := map[string]bool{}
	for i := range n {
		want[fmt.Sprintf("will/dev%d", i)] = true
	}
	for len(want) > 0 {
		select {
		case p := <-watch.received:
			if !want[p.Topic] || string(p.Payload) != "gone "+strings.TrimPrefix(p.Topic, "will/") {
				t.Fatalf("%s %q received twice, or never a will", p.Topic, p.Payload)
			}
			delete(want, p.Topic)
		case <-time.After(20 * time.Second):
			t.Fatalf("wills not received: %v", want)
		}
	}
	pub := dial(t, c, "pub", "user")
	watch.expectNone(t, pub, "will/marker")
	if got := b.router.Adopted.Load() + c.router.Adopted.Load(); got != n+1 {
		t.Fatalf("%d sessions taken over, want %d", got, n+1)
	}
	if got := b.srv.Stats.DeniedPublish.Load() + c.srv.Stats.DeniedPublish.Load(); got != 1 {
		t.Fatalf("%d wills refused, want the restricted one's", got)
	}
	for i := range n {
		if holderOf(t, fmt.Sprintf("dev%d", i), b, c) == nil {
			t.Fatalf("nobody holds dev%d's session", i)
		}
	}
}

// TestWillCancelledByReturn: a client whose node died, connecting again to
// another node before its will's delay ends, resumes its session there,
// and the will is never published (§3.1.3.2.2).
func TestWillCancelledByReturn(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second), startLiveNode(t, url, "c", time.Second)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	dev := withWill(t, a, "dev", "user", "will/dev", 3600, 3)
	dev.subscribe(t, "cmd/#", 1)
	recorded(t, b, "dev")
	a.crash()
	eventually(t, "a node took the session", func() bool { return holderOf(t, "dev", b, c) != nil })
	adopter := holderOf(t, "dev", b, c)
	back := persistent(t, c, "dev", false)
	if !back.ack.SessionPresent {
		t.Fatal("session not present after its node died")
	}
	if adopter != c {
		eventually(t, "the adopter let the session go", func() bool { return adopter.srv.Client("dev") == nil })
	}
	pub := dial(t, b, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "cmd/x", QoS: 1, Payload: []byte("x")})
	back.expect(t, "cmd/x", "x")
	time.Sleep(3 * time.Second) // past the will's delay
	watch.expectNone(t, pub, "will/marker")
	if got := b.srv.Stats.WillsWithheld.Load() + c.srv.Stats.WillsWithheld.Load(); got != 0 {
		t.Fatalf("%d wills withheld: the return should have cancelled it", got)
	}
}

// TestCleanStartEndsSessionOfEndedNode: a client whose node died
// connecting with Clean Start 1 to another node, before any node took its
// session, ends that session (§3.1.4), and the will goes then, once,
// whatever its delay (§3.1.3.2.2); so does the will of a session whose
// node is alive, which its holder leaves to the clean start's node. One
// that resumes its session (Clean Start 0) within the delay sends none.
func TestCleanStartEndsSessionOfEndedNode(t *testing.T) {
	url := natstest.Start(t)
	// Liveness keys that outlive the test: nobody takes a's sessions.
	a, b, c := startLiveNode(t, url, "a", time.Hour), startLiveNode(t, url, "b", time.Hour), startLiveNode(t, url, "c", time.Hour)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	for _, id := range []string{"orphan", "resumed"} {
		withWill(t, a, id, "user", "will/"+id, 3600, 3600)
		recorded(t, c, id)
	}
	withWill(t, b, "held", "user", "will/held", 3600, 3600)
	recorded(t, c, "held")
	a.crash()
	pub := dial(t, b, "pub", "user")

	if back := persistent(t, c, "orphan", true); back.ack.SessionPresent {
		t.Fatal("session present on a clean start")
	}
	watch.expect(t, "will/orphan", "gone orphan")
	watch.expectNone(t, pub, "will/marker")

	if back := persistent(t, c, "resumed", false); !back.ack.SessionPresent {
		t.Fatal("session not present after its node died")
	}
	watch.expectNone(t, pub, "will/marker")

	persistent(t, c, "held", true)
	watch.expect(t, "will/held", "gone held")
	eventually(t, "b let the session go", func() bool { return b.srv.Client("held") == nil })
	watch.expectNone(t, pub, "will/marker")
	if got := b.srv.Stats.WillsWithheld.Load() + c.srv.Stats.WillsWithheld.Load(); got != 0 {
		t.Fatalf("%d wills withheld", got)
	}
}

// TestOrphanExpires: a session whose node died, and whose client never
// comes back, expires on the node that took it: its record and its queue
// of messages are deleted.
func TestOrphanExpires(t *testing.T) {
	url := natstest.Start(t)
	a, b := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second)
	expiry := uint32(2)
	sub := dialWith(t, a, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "user",
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	sub.subscribe(t, "t/#", 1)
	sub.leave(t, a, "sub")
	pub := dial(t, b, "pub", "user")
	for range 3 {
		pub.publish(t, &paho.Publish{Topic: "t/x", QoS: 1, Payload: []byte("queued")})
	}
	s := b.router.sessions
	ctx := context.Background()
	subject := queuePrefix + "." + sessionKey("sub")
	if _, err := s.stream.GetLastMsgForSubject(ctx, subject); err != nil {
		t.Fatalf("nothing queued for the session: %v", err)
	}
	a.crash()
	eventually(t, "the record is deleted", func() bool {
		_, err := s.kv.Get(ctx, sessionKey("sub"))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	eventually(t, "the queue is deleted", func() bool {
		_, err := s.stream.GetLastMsgForSubject(ctx, subject)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	if b.router.Adopted.Load() != 1 || b.srv.Client("sub") != nil {
		t.Fatalf("adopted %d, session still held: %v", b.router.Adopted.Load(), b.srv.Client("sub") != nil)
	}
}

// TestAdoptRace: two nodes that try to take the same orphaned session at
// the same moment: one does, and its will is published once.
func TestAdoptRace(t *testing.T) {
	url := natstest.Start(t)
	// Liveness keys that outlive the test: the nodes scan for orphans only
	// when the test says.
	a, b, c := startLiveNode(t, url, "a", time.Hour), startLiveNode(t, url, "b", time.Hour), startLiveNode(t, url, "c", time.Hour)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	withWill(t, a, "dev", "user", "will/dev", 3600, 0)
	recorded(t, b, "dev")
	dead := a.router.sessions.instance
	a.crash()
	if err := b.router.sessions.nodes.Delete(context.Background(), dead); err != nil { // as its expiry would
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, n := range []*node{b, c} {
		wg.Add(1)
		go func() { defer wg.Done(); n.router.sessions.adoptOrphans() }()
	}
	wg.Wait()
	watch.expect(t, "will/dev", "gone dev")
	pub := dial(t, c, "pub", "user")
	watch.expectNone(t, pub, "will/marker")
	if got := b.router.Adopted.Load() + c.router.Adopted.Load(); got != 1 {
		t.Fatalf("%d nodes took the session, want 1", got)
	}
}

// TestWillToMosquittoSub: Debian's mosquitto_sub, subscribed on node b,
// receives the will of a client whose node a died.
func TestWillToMosquittoSub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_sub is required in CI: apt-get install mosquitto-clients")
		}
		t.Skip("mosquitto_sub not found (apt-get install mosquitto-clients to run this test)")
	}
	url := natstest.Start(t)
	a, b := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second)
	host, port, _ := strings.Cut(b.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-V", "5", "-h", host, "-p", port, "-i", "mosq", "-u", "user",
		"-t", "will/#", "-q", "1", "-C", "1", "-v")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mosquitto_sub subscribed", func() bool {
		cl := b.srv.Client("mosq")
		return cl != nil && cl.Subscriptions() == 1
	})
	withWill(t, a, "dev", "user", "will/dev", 3600, 1)
	recorded(t, b, "dev")
	a.crash()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out)
	}
	if got := strings.TrimSpace(out.String()); got != "will/dev gone dev" {
		t.Fatalf("mosquitto_sub printed %q", got)
	}
}

// TestSharedOfEndedNode: a persistent session's shared subscription
// (§4.8.2) whose node died is joined again by the node that takes the
// session over: what the group gets while its client is away is queued
// for it, and reaches it on the node where it returns.
func TestSharedOfEndedNode(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second), startLiveNode(t, url, "c", time.Second)
	sub := persistent(t, a, "worker", true)
	sub.subscribe(t, "$share/g/jobs/#", 1)
	sub.leave(t, a, "worker")
	a.crash()
	eventually(t, "a node took the session", func() bool { return holderOf(t, "worker", b, c) != nil })
	adopter := holderOf(t, "worker", b, c)
	eventually(t, "the adopter joined the group", func() bool { return adopter.srv.Members("$share/g/jobs/#") == 1 })
	pub := dial(t, b, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "jobs/1", QoS: 1, Payload: []byte("job")})
	back := persistent(t, c, "worker", false)
	if !back.ack.SessionPresent {
		t.Fatal("session not present after its node died")
	}
	back.expect(t, "jobs/1", "job")
}

// TestWillWithoutSessionOfEndedNode: the will of a connection whose
// session ends with it (Session Expiry Interval 0) on a node that died is
// published once by another node; one whose client disconnected normally
// before is not, nor the will of a client whose identity may not publish
// to its topic.
func TestWillWithoutSessionOfEndedNode(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startLiveNode(t, url, "a", time.Second), startLiveNode(t, url, "b", time.Second), startLiveNode(t, url, "c", time.Second)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	watch.subscribe(t, "secret/#", 1)
	for _, w := range []struct{ id, user, topic string }{{"dev", "user", "will/dev"}, {"left", "user", "will/left"}, {"spy", "restricted", "secret/spy"}} {
		cl := withWill(t, a, w.id, w.user, w.topic, 0, 0)
		cl.publish(t, &paho.Publish{Topic: "sync", QoS: 1}) // acknowledged once its will is kept
		if w.id == "left" {
			cl.Disconnect(&paho.Disconnect{})
			eventually(t, "the session ended", func() bool { return a.srv.Client("left") == nil })
		}
	}
	eventually(t, "the normal disconnection dropped its will", func() bool {
		keys, err := b.router.sessions.wills.ListKeys(context.Background())
		if err != nil {
			return false
		}
		n := 0
		for k := range keys.Keys() {
			if strings.Contains(k, ".") {
				n++
			}
		}
		return n == 2
	})
	a.crash()
	watch.expect(t, "will/dev", "gone dev")
	pub := dial(t, c, "pub", "user")
	watch.expectNone(t, pub, "will/marker")
	if got := b.router.AdoptedWills.Load() + c.router.AdoptedWills.Load(); got != 2 {
		t.Fatalf("%d wills taken over, want 2", got)
	}
	if got := b.srv.Stats.DeniedPublish.Load() + c.srv.Stats.DeniedPublish.Load(); got != 1 {
		t.Fatalf("%d wills refused, want the restricted one's", got)
	}
	eventually(t, "node a's registration is gone", func() bool {
		_, err := b.router.sessions.wills.Get(context.Background(), a.router.sessions.instance)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

// TestNewerRecordEndsCopy: a node that missed the announcement of a newer
// claim to a session it holds (cut off from NATS while another node took
// it over) ends its copy when the newer record reaches its watch of the
// bucket, without deleting the record.
func TestNewerRecordEndsCopy(t *testing.T) {
	url := natstest.Start(t)
	a := startLiveNode(t, url, "a", time.Hour)
	sub := persistent(t, a, "dev", true)
	sub.subscribe(t, "t/#", 1)
	sub.leave(t, a, "dev")
	s := a.router.sessions
	ctx := context.Background()
	var (
		e jetstream.KeyValueEntry
		v sessionEntry
	)
	eventually(t, "the record says the client left", func() bool { // written after the connection ended
		var err error
		if e, err = s.kv.Get(ctx, sessionKey("dev")); err != nil {
			return false
		}
		return json.Unmarshal(e.Value(), &v) == nil && !v.Record.Away.IsZero()
	})
	v.Record.Claim, v.Holder = v.Record.Claim+1000, "another"
	data, _ := json.Marshal(&v)
	if _, err := s.kv.Update(ctx, sessionKey("dev"), data, e.Revision()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node a ended its copy", func() bool { return a.srv.Client("dev") == nil })
	if cur, err := s.kv.Get(ctx, sessionKey("dev")); err != nil || cur.Revision() != e.Revision()+1 {
		t.Fatalf("the newer record after node a's copy ended: %v %v", cur, err)
	}
}
