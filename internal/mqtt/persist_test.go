package mqtt

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// stringIdentity stores the test's identities, which are user names.
type stringIdentity struct{}

func (stringIdentity) EncodeIdentity(id any) []byte { s, _ := id.(string); return []byte(s) }

func (stringIdentity) DecodeIdentity(b []byte) (any, error) { return string(b), nil }

// TestKill9KeepsAcknowledged: every QoS 1 and 2 message the server
// acknowledged for a persistent session, and the retained message, are
// there after the server process is killed with SIGKILL and started again
// on the same directory.
func TestKill9KeepsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	first, kill := serveChild(t, dir)

	c, _ := first.connect(t, packet.V5, "keeper", persistent(600))
	c.Subscribe(1, []packet.ReasonCode{1, 2}, sub("q1/#", 1), sub("q2/#", 2))
	c.Send(&packet.Disconnect{})
	c.Closed()
	pub, _ := first.connect(t, packet.V5, "pub", nil)
	const n = 20
	for i := range n {
		qos := byte(1 + i%2)
		pub.Send(&packet.Publish{QoS: qos, Topic: fmt.Sprintf("q%d/%d", qos, i), PacketID: uint16(i + 1), Payload: []byte("m")})
		if a := pub.Read().(*packet.Ack); a.Code != 0 {
			t.Fatalf("message %d: %+v", i, a)
		}
	}
	pub.Send(&packet.Publish{QoS: 1, Retain: true, Topic: "state", PacketID: 99, Payload: []byte("on")})
	pub.Read()
	store := kill()
	second := newServer(t, func(c *Config) { c.Store, c.Identity = store, stringIdentity{} })
	c, ack := second.connect(t, packet.V5, "keeper", persistent(600))
	if !ack.SessionPresent {
		t.Fatal("the session did not survive")
	}
	got := map[string]bool{}
	for rels := 0; len(got) < n || rels < n/2; {
		switch p := c.Read().(type) {
		case *packet.Publish:
			got[p.Topic] = true
			kind := packet.PUBACK
			if p.QoS == 2 {
				kind = packet.PUBREC
			}
			c.Send(&packet.Ack{Kind: kind, PacketID: p.PacketID})
		case *packet.Ack: // PUBREL
			c.Send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			rels++
		}
	}
	if len(got) != n {
		t.Fatalf("%d distinct messages of %d", len(got), n)
	}
	c.Subscribe(2, []packet.ReasonCode{0}, sub("state", 0))
	if p := c.Publication(); string(p.Payload) != "on" || !p.Retain {
		t.Fatalf("retained %+v", p)
	}
	eventually(t, "the acknowledged messages leave the store", func() bool {
		snap, err := store.Load()
		return err == nil && len(snap.Messages["keeper"]) == 0
	})
}

// TestKill9KeepsWill: the will of a client connected with a persistent
// session when the server process is killed with SIGKILL is published
// after the restart, once its delay passed (§3.1.3.2.2: the connection
// ended without DISCONNECT), to a persistent subscriber stored before.
func TestKill9KeepsWill(t *testing.T) {
	dir := t.TempDir()
	first, kill := serveChild(t, dir)
	watch, _ := first.connect(t, packet.V5, "watch", persistent(600))
	watch.Subscribe(1, []packet.ReasonCode{1}, sub("will/#", 1))
	watch.Send(&packet.Disconnect{})
	watch.Closed()
	dev, _ := first.connect(t, packet.V5, "dev", func(c *packet.Connect) {
		persistent(600)(c)
		c.Will = &packet.Will{Topic: "will/dev", QoS: 1, Payload: []byte("gone")}
		c.Will.Props.WillDelay = 1
		c.Will.Props.Set(packet.PropWillDelay)
	})
	dev.Send(&packet.Ping{}) // answered once dev's record, with its will, is written
	dev.Read()
	store := kill()
	second := newServer(t, func(c *Config) { c.Store, c.Identity = store, stringIdentity{} })
	second.auth.setGrants(topics.Grants{Allow: []string{"#"}})
	second.StartWills()
	eventually(t, "the will is queued for the watcher", func() bool { return second.Client("watch").Queued() == 1 })
	watch, _ = second.connect(t, packet.V5, "watch", persistent(600))
	if p := watch.Publication(); p.Topic != "will/dev" || string(p.Payload) != "gone" {
		t.Fatalf("received %+v, want dev's will", p)
	}
}

// serveChild starts a server process (TestServeChild) on dir and returns
// it, and kill: it ends the process with SIGKILL and opens its store
// (closed when the test ends).
func serveChild(t *testing.T, dir string) (first *server, kill func() *Bolt) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestServeChild$")
	child.Env = append(os.Environ(), "THINGID_MQTT_CHILD_DIR="+dir)
	child.Stderr = os.Stderr
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return &server{addr: strings.TrimSpace(line)}, func() *Bolt {
		child.Process.Signal(syscall.SIGKILL)
		child.Wait()
		store, err := OpenBolt(dir, "mqtt.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		return store
	}
}

// TestServeChild is the server process TestKill9KeepsAcknowledged kills.
func TestServeChild(t *testing.T) {
	dir := os.Getenv("THINGID_MQTT_CHILD_DIR")
	if dir == "" {
		t.Skip("the child process of TestKill9KeepsAcknowledged")
	}
	store, err := OpenBolt(dir, "mqtt.db")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, func(c *Config) {
		c.Store, c.Identity = store, stringIdentity{}
		c.Log = slog.New(slog.DiscardHandler)
	})
	s.auth.setGrants(topics.Grants{Allow: []string{"#"}})
	fmt.Println(s.addr)
	select {}
}

// TestSessionExpiresFromStore: a stored session whose expiry passed while
// the server was down is gone after the restart, its record deleted.
func TestSessionExpiresFromStore(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenBolt(dir, "mqtt.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, r := range []SessionRecord{{ClientID: "old", Expiry: 1, Away: time.Unix(1, 0)}, {ClientID: "fresh", Expiry: 1 << 40}} {
		if err := store.PutSession(&r, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := newServer(t, func(c *Config) { c.Store = store })
	if s.Client("old") != nil || s.Client("fresh") == nil {
		t.Fatalf("old %v, fresh %v", s.Client("old"), s.Client("fresh"))
	}
	snap, _ := store.Load()
	if len(snap.Sessions) != 1 {
		t.Fatalf("stored sessions %+v", snap.Sessions)
	}
}

// countingStore counts the writes of queued messages.
type countingStore struct {
	*Bolt
	mu     sync.Mutex
	writes [][]QueuedMessage
}

func (c *countingStore) PutMessages(ms []QueuedMessage) error {
	c.mu.Lock()
	c.writes = append(c.writes, ms)
	c.mu.Unlock()
	return c.Bolt.PutMessages(ms)
}

// TestOneWritePerPublish: a QoS 1 message for ten persistent sessions is
// one write to the Store, done before the PUBACK.
func TestOneWritePerPublish(t *testing.T) {
	bolt, err := OpenBolt(t.TempDir(), "mqtt.db")
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	store := &countingStore{Bolt: bolt}
	s := newServer(t, func(c *Config) { c.Store = store })
	for i := range 10 {
		c, _ := s.connect(t, packet.V5, fmt.Sprint("p", i), persistent(600))
		c.Subscribe(1, []packet.ReasonCode{1}, sub("t", 1))
		c.Send(&packet.Disconnect{})
		c.Closed()
	}
	pub, _ := s.connect(t, packet.V5, "pub", nil)
	pub.Send(&packet.Publish{QoS: 1, Topic: "t", PacketID: 1, Payload: []byte("m")})
	pub.Read()
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.writes) != 1 || len(store.writes[0]) != 10 {
		t.Fatalf("%d writes", len(store.writes))
	}
}

// TestStoredSubscriptions: a persistent session's subscriptions, each
// SUBSCRIBE and UNSUBSCRIBE written on its own, are there after a restart;
// a clean session leaves no record.
func TestStoredSubscriptions(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenBolt(dir, "mqtt.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	first := newServer(t, func(c *Config) { c.Store = store })
	c, _ := first.connect(t, packet.V5, "keeper", persistent(600))
	c.Subscribe(1, []packet.ReasonCode{0, 1}, sub("a", 0), sub("b/+", 1))
	c.Send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"a"}})
	c.Read()
	first.connect(t, packet.V5, "passing", nil)
	first.Close()

	snap, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sessions) != 1 || snap.Sessions[0].ClientID != "keeper" {
		t.Fatalf("stored sessions %+v", snap.Sessions)
	}
	if subs := snap.Subscriptions["keeper"]; len(subs) != 1 || subs[0].Filter != "b/+" || subs[0].QoS != 1 {
		t.Fatalf("stored subscriptions %+v", subs)
	}
	second := newServer(t, func(c *Config) { c.Store = store })
	if cl := second.Client("keeper"); cl == nil || cl.Subscriptions() != 1 || second.subs.Len() != 1 {
		t.Fatal("the restored session lacks its subscription")
	}
}
