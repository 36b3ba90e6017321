package mqttnats

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// TestOverlappingFiltersDeliverOnce: filters of one node whose subjects
// overlap make NATS send a message once per subject; each subscriber
// still gets it once, a client with several matching filters too.
func TestOverlappingFiltersDeliverOnce(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	both := dial(t, b, "both", "user")
	for _, f := range []string{"o/+", "o/#", "+/x", "#"} {
		both.subscribe(t, f, 1)
	}
	one := dial(t, b, "one", "user")
	one.subscribe(t, "o/x", 1)
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "o/x", QoS: 1, Payload: []byte("once")})
	both.expect(t, "o/x", "once")
	one.expect(t, "o/x", "once")
	// A later message (in one publisher's order) shows no copy came.
	pub.publish(t, &paho.Publish{Topic: "o/x", QoS: 1, Payload: []byte("next")})
	both.expect(t, "o/x", "next")
	one.expect(t, "o/x", "next")
	if d := b.router.in.Duplicates.Load(); d == 0 {
		t.Fatal("NATS sent no copy: the test's filters do not overlap as subjects")
	}
	if n := b.router.Injected.Load(); n != 2 {
		t.Fatalf("node b injected %d messages, want 2", n)
	}
}

// subscriptions is the number of NATS subscriptions of n's connection.
func subscriptions(n *node) int { return n.router.nc.NumSubscriptions() }

// TestInterestFollowsSubscriptions: a node subscribes on NATS to the
// subjects its subscriptions need, once for several of them, and drops
// them with the last subscription, whether unsubscribed, its session
// ended or expired; a persistent session away keeps its interest, and
// a topic no subscription of a node matches never reaches it.
func TestInterestFollowsSubscriptions(t *testing.T) {
	srv := natstest.Run(t)
	a, b := startNode(t, srv.URL, "a"), startNode(t, srv.URL, "b")
	base := subscriptions(b)
	if n := b.router.Subjects(); n != 0 {
		t.Fatalf("%d subjects before any subscription", n)
	}
	c1, c2 := dial(t, b, "c1", "user"), dial(t, b, "c2", "user")
	c1.subscribe(t, "i/#", 1) // thingid.mqtt.i and thingid.mqtt.i.>
	c2.subscribe(t, "i/#", 1)
	c2.subscribe(t, "i", 1) // thingid.mqtt.i again
	if n, subs := b.router.Subjects(), subscriptions(b); n != 2 || subs != base+2 {
		t.Fatalf("%d subjects, %d NATS subscriptions (%d before); want 2, +2", n, subs, base)
	}
	var subsz struct {
		Subs int `json:"num_subscriptions"`
	}
	srv.Get(t, "/subsz", &subsz)
	before := subsz.Subs

	// Nothing subscribed here matches: NATS sends node b nothing (the
	// first marker comes after pub's session announcement).
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "i", QoS: 1, Payload: []byte("marker")})
	c2.expect(t, "i", "marker")
	in := b.router.nc.Stats().InMsgs
	for i := range 20 {
		pub.publish(t, &paho.Publish{Topic: fmt.Sprintf("elsewhere/%d", i), QoS: 1, Payload: []byte("x")})
	}
	pub.publish(t, &paho.Publish{Topic: "i", QoS: 1, Payload: []byte("marker")})
	c2.expect(t, "i", "marker")
	if got := b.router.nc.Stats().InMsgs - in; got != 1 {
		t.Fatalf("node b took %d messages from NATS, want the marker only", got)
	}

	unsubscribe(t, c1, "i/#")
	if n := b.router.Subjects(); n != 2 {
		t.Fatalf("%d subjects with c2's subscriptions left, want 2", n)
	}
	unsubscribe(t, c2, "i/#")
	if n := b.router.Subjects(); n != 1 {
		t.Fatalf("%d subjects with i left, want 1", n)
	}
	c2.Disconnect(&paho.Disconnect{}) // a clean session ends
	eventually(t, "the ended session's interest dropped", func() bool { return b.router.Subjects() == 0 && subscriptions(b) == base })
	eventually(t, "nats-server dropped the subscriptions", func() bool {
		srv.Get(t, "/subsz", &subsz)
		return subsz.Subs == before-2
	})

	// A persistent session away keeps its interest until it expires.
	expiry := uint32(1)
	away := dialWith(t, b, &paho.Connect{ClientID: "away", CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "user",
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	away.subscribe(t, "p/+", 1)
	away.Disconnect(&paho.Disconnect{})
	eventually(t, "the session is away", func() bool { cl := b.srv.Client("away"); return cl != nil && cl.Conn() == nil })
	if n := b.router.Subjects(); n != 1 {
		t.Fatalf("%d subjects for the session away, want 1", n)
	}
	eventually(t, "the expired session's interest dropped", func() bool { return b.router.Subjects() == 0 })
}

func unsubscribe(t *testing.T, c *client, filter string) {
	t.Helper()
	if _, err := c.Unsubscribe(t.Context(), &paho.Unsubscribe{Topics: []string{filter}}); err != nil {
		t.Fatal(err)
	}
}

// TestInterestEdges: '#' matches its parent level across nodes, levels
// that NATS tokens cannot hold match as they are, $ filters stay on their
// node and take no subject, a shared subscription is a queue group and no
// interest, and a filter starting with a wildcard matches no $ topic.
func TestInterestEdges(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	sub := dial(t, b, "sub", "user")
	sub.subscribe(t, "$SYS/#", 0)
	sub.subscribe(t, "$share/g/s/#", 1)
	if n := b.router.Subjects(); n != 0 {
		t.Fatalf("%d subjects for $SYS and a shared subscription, want none", n)
	}
	for _, f := range []string{"parent/#", "e.x/+/ z", "/+", "*/>", "%41/#"} {
		sub.subscribe(t, f, 1)
	}
	pub := dial(t, a, "pub", "user")
	for _, topic := range []string{"parent", "parent/child/grandchild", "e.x/1/ z", "/a", "*/>", "%41"} {
		pub.publish(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
		sub.expect(t, topic, topic)
	}
	// Topics next to those, which none matches.
	for _, topic := range []string{"parents", "e/x/1/ z", "e.x/1/z", "a", "//a", "x/>", "A"} {
		pub.publish(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
	}
	pub.publish(t, &paho.Publish{Topic: "s/1", QoS: 1, Payload: []byte("shared")})
	sub.expect(t, "s/1", "shared")
	sub.expectNone(t, pub, "parent/marker")
}

// TestInterestAfterReconnect: when the NATS server comes back, the node's
// subscriptions for a persistent session are made again: its client,
// back, gets what another node publishes, without subscribing again.
func TestInterestAfterReconnect(t *testing.T) {
	srv := natstest.Run(t)
	a, b := startNode(t, srv.URL, "a"), startNode(t, srv.URL, "b")
	expiry := uint32(300)
	connect := &paho.Connect{ClientID: "keeper", CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "user",
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	c := dialWith(t, b, connect)
	c.subscribe(t, "r/+", 1)
	srv.Restart(t)
	eventually(t, "both nodes reconnected", func() bool { return a.router.Ready() == nil && b.router.Ready() == nil })
	connect.CleanStart = false
	c = dialWith(t, b, connect)
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "r/1", QoS: 1, Payload: []byte("again")})
	c.expect(t, "r/1", "again")
}

// TestInterestMatchesExactly: in rounds of a few random filters on node b
// (taps, each a subscription) and random topics published on node a, a
// message reaches node b through NATS exactly when a filter there matches
// it (topic.Covers is the MQTT rule), once, and each tap gets exactly what
// its filter matches; once the taps stop, node b subscribes to nothing.
func TestInterestMatchesExactly(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	rng := rand.New(rand.NewPCG(17, 1))
	levels := []string{"a", "b", "", ".", " ", "%", "*", ">", "$x", "\u00e9"}
	random := func(wildcards bool) string {
		parts := make([]string, 1+rng.IntN(4))
		for i := range parts {
			switch r := rng.IntN(10); {
			case wildcards && r < 2:
				parts[i] = "+"
			case wildcards && r < 4 && i == len(parts)-1:
				parts[i] = "#"
			default:
				parts[i] = levels[rng.IntN(len(levels))]
			}
		}
		return strings.Join(parts, "/")
	}
	var topics []string
	for seen := map[string]bool{}; len(topics) < 150; {
		// $ topics stay on their node: never forwarded, they reach no other.
		if tp := random(false); topic.ValidName(tp) && !strings.HasPrefix(tp, "$") && !seen[tp] {
			seen[tp] = true
			topics = append(topics, tp)
		}
	}
	const marker = "marker/end"
	for round := range 40 {
		var mu sync.Mutex
		got := map[string]map[string]int{} // filter → topic → deliveries
		var filters []string
		var stops []func()
		for len(filters) < 1+round%3 {
			f := random(true)
			if !topic.ValidFilter(f) || got[f] != nil {
				continue
			}
			got[f] = map[string]int{}
			filters = append(filters, f)
			stops = append(stops, b.srv.Tap(f, func(m *mqtt.Message) {
				mu.Lock()
				got[f][m.Topic]++
				mu.Unlock()
			}))
		}
		done := make(chan struct{})
		stops = append(stops, b.srv.Tap(marker, func(*mqtt.Message) { close(done) }))
		injected := b.router.Injected.Load()
		for _, tp := range topics {
			a.srv.Publish(&mqtt.Message{Topic: tp, Payload: []byte("p"), QoS: 1, From: "pub"})
		}
		a.srv.Publish(&mqtt.Message{Topic: marker, Payload: []byte("m"), QoS: 1, From: "pub"})
		<-done
		mu.Lock()
		reaching := 0
		for _, tp := range topics {
			matched := false
			for _, f := range filters {
				want := 0
				if topic.Covers(f, tp) {
					want, matched = 1, true
				}
				if got[f][tp] != want {
					t.Errorf("filters %q: %q got topic %q %d times, want %d", filters, f, tp, got[f][tp], want)
				}
			}
			if matched {
				reaching++
			}
		}
		mu.Unlock()
		if n := b.router.Injected.Load() - injected - 1; n != int64(reaching) {
			t.Errorf("filters %q: node b took %d of %d topics from NATS; %d match a filter there", filters, n, len(topics), reaching)
		}
		for _, stop := range stops {
			stop()
		}
		if n := b.router.Subjects(); n != 0 {
			t.Fatalf("filters %q: %d subjects left after the taps stopped", filters, n)
		}
	}
	t.Logf("%d copies dropped", b.router.in.Duplicates.Load())
}
