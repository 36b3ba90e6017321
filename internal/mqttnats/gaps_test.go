package mqttnats

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// leaveWithWill connects id as user to n with a session of expiry
// seconds and a will on topic an hour after its connection ends, then
// drops the connection without DISCONNECT (a lost network), and waits
// until the bucket says the client left with its will pending.
func leaveWithWill(t testing.TB, n *node, id, user, topic string, expiry uint32) {
	t.Helper()
	cp := &packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 30, ClientID: id, UsernameFlag: true, Username: user,
		Will: &packet.Will{QoS: 1, Topic: topic, Payload: []byte("gone " + id)}}
	cp.Props.SessionExpiry = expiry
	cp.Props.Set(packet.PropSessionExpiry)
	cp.Will.Props.WillDelay = 3600
	cp.Will.Props.Set(packet.PropWillDelay)
	c, _ := rawConnect(t, n, cp)
	c.nc.Close()
	s := n.router.sessions
	eventually(t, id+" away with its will in the bucket", func() bool {
		e, err := s.kv.Get(context.Background(), sessionKey(id))
		var v sessionEntry
		return err == nil && json.Unmarshal(e.Value(), &v) == nil && !v.Record.Away.IsZero() && v.Record.Will != nil
	})
}

// TestExpiredSessionOfEndedNodeSendsWill: a session whose node died after
// its client left, and that expired before any node took it, is found
// expired by the node its client connects to next; the session ends there
// and its will goes (§3.1.3.2.2: at the latest when the session ends),
// once, as its owner's publish: the one whose owner may not publish to
// its topic is refused, and so is the one whose owner, read again, is
// disabled. Resumed (Clean Start 0) and started clean.
func TestExpiredSessionOfEndedNodeSendsWill(t *testing.T) {
	url := natstest.Start(t)
	// Liveness keys that outlive the test: nobody takes a's sessions.
	a, b := startLiveNode(t, url, "a", time.Hour), startLiveNode(t, url, "b", time.Hour)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	watch.subscribe(t, "secret/#", 1)
	const expiry = 8
	clients := []struct{ id, user, topic string }{{"resumed", "user", "will/resumed"}, {"clean", "user", "will/clean"}, {"spy", "restricted", "secret/spy"}, {"off", "disabled", "will/off"}}
	for _, c := range clients {
		leaveWithWill(t, a, c.id, c.user, c.topic, expiry)
	}
	a.crash()
	for _, c := range clients { // a died within the sessions' expiry, their wills kept
		e, err := b.router.sessions.kv.Get(context.Background(), sessionKey(c.id))
		var v sessionEntry
		if err != nil || json.Unmarshal(e.Value(), &v) != nil || v.Record.Will == nil {
			t.Fatalf("%s's session ended on node a before it died (%v): the test tests nothing", c.id, err)
		}
	}
	time.Sleep(expiry * time.Second)
	pub := dial(t, b, "pub", "user")

	if back := persistent(t, b, "resumed", false); back.ack.SessionPresent {
		t.Fatal("an expired session present")
	}
	watch.expect(t, "will/resumed", "gone resumed")
	persistent(t, b, "clean", true)
	watch.expect(t, "will/clean", "gone clean")
	dialWith(t, b, persistentConnect("spy", "restricted", false))
	dialWith(t, b, persistentConnect("off", "user", true))
	watch.expectNone(t, pub, "will/marker")
	if got := b.srv.Stats.DeniedPublish.Load(); got != 2 {
		t.Fatalf("%d wills refused, want the restricted and the disabled ones'", got)
	}
}

// TestCleanStartBeforeCopyHasRecord: a clean start on node b whose copy
// of the bucket has not received the session node a wrote (here: b's
// watch of the bucket stopped before) still ends that session, decided on
// the bucket's current state, and its will, which its holder a leaves to
// the clean start's node, goes once.
func TestCleanStartBeforeCopyHasRecord(t *testing.T) {
	url := natstest.Start(t)
	a, b := startLiveNode(t, url, "a", time.Hour), startLiveNode(t, url, "b", time.Hour)
	watch := dial(t, a, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	if err := b.router.sessions.watcher.Stop(); err != nil {
		t.Fatal(err)
	}
	withWill(t, a, "dev", "user", "will/dev", 3600, 3600)
	recorded(t, a, "dev")
	b.router.sessions.mu.Lock()
	_, seen := b.router.sessions.known[sessionKey("dev")]
	b.router.sessions.mu.Unlock()
	if seen {
		t.Fatal("b's copy of the bucket has the session: the test tests nothing")
	}
	if back := persistent(t, b, "dev", true); back.ack.SessionPresent {
		t.Fatal("session present on a clean start")
	}
	watch.expect(t, "will/dev", "gone dev")
	eventually(t, "a let the session go", func() bool { return a.srv.Client("dev") == nil })
	pub := dial(t, a, "pub", "user")
	watch.expectNone(t, pub, "will/marker")
}

// TestUnheldRecordOfEarlierVersion: records written by a node of an
// earlier version name no holder, and no liveness key says whether that
// node still runs. One whose client left and whose expiry interval and a
// NodeTTL passed since is ended by a node of this version, with its will,
// once; one not expired that long, and one whose client is connected
// there, stay: that node may be running (a rolling upgrade).
func TestUnheldRecordOfEarlierVersion(t *testing.T) {
	url := natstest.Start(t)
	// Liveness keys that outlive the test: the nodes scan only when the
	// test says, and a NodeTTL is an hour.
	b, c := startLiveNode(t, url, "b", time.Hour), startLiveNode(t, url, "c", time.Hour)
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	s := b.router.sessions
	for _, r := range []struct {
		id   string
		away time.Time
	}{{"ended", time.Now().Add(-2 * time.Hour)}, {"recent", time.Now().Add(-30 * time.Minute)}, {"connected", time.Time{}}} {
		v := sessionEntry{Record: mqtt.SessionRecord{ClientID: r.id, Identity: []byte("user"), Version: 5, Expiry: time.Minute, Away: r.away,
			Will: &packet.Will{QoS: 1, Topic: "will/" + r.id, Payload: []byte("gone " + r.id)}}}
		data, err := json.Marshal(&v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.kv.Create(context.Background(), sessionKey(r.id), data); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*node{b, c} {
			recorded(t, n, r.id)
		}
	}
	var wg sync.WaitGroup
	for _, n := range []*node{b, c} {
		wg.Add(1)
		go func() { defer wg.Done(); n.router.sessions.adoptOrphans() }()
	}
	wg.Wait()
	watch.expect(t, "will/ended", "gone ended")
	pub := dial(t, c, "pub", "user")
	watch.expectNone(t, pub, "will/marker")
	eventually(t, "the ended session's record is deleted", func() bool {
		_, err := s.kv.Get(context.Background(), sessionKey("ended"))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	for _, id := range []string{"recent", "connected"} {
		if _, err := s.kv.Get(context.Background(), sessionKey(id)); err != nil {
			t.Fatalf("%s's record: %v", id, err)
		}
	}
}
