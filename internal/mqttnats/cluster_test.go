package mqttnats

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// auth admits everyone by user name and lets them subscribe to anything;
// it denies topics under secret/ to the user "restricted", at delivery
// (the subscriber's rules) and for its publishes (wills included). Read
// again for a session built from a record (mqtt.Reviver), the user
// "disabled" is refused: disabled while no node held its session.
type auth struct{}

func (auth) Revive(c *mqtt.Client) bool { return c.Identity() != "disabled" }

func (auth) Connect(_ context.Context, c *mqtt.Client, pk *packet.Connect, _ any) error {
	c.SetIdentity(pk.Username)
	return nil
}
func (auth) Reauthenticate(context.Context, *mqtt.Client, *packet.Auth) error {
	return &packet.Error{Code: packet.BadAuthenticationMethod}
}
func (auth) Continue(context.Context, *mqtt.Client, *packet.Auth) error {
	return &packet.Error{Code: packet.BadAuthenticationMethod}
}
func (auth) Publish(c *mqtt.Client, topic string) bool {
	return c.Identity() != "restricted" || !strings.HasPrefix(topic, "secret/")
}
func (auth) Subscribe(*mqtt.Client, string) bool { return true }
func (auth) Deliver(c *mqtt.Client, topic string) bool {
	return c.Identity() != "restricted" || !strings.HasPrefix(topic, "secret/")
}

// node is one MQTT server joined to NATS.
type node struct {
	srv    *mqtt.Server
	router *Router
	addr   string
	ln     net.Listener
	wg     sync.WaitGroup
	once   sync.Once
}

func startNode(t testing.TB, url, name string) *node {
	t.Helper()
	return startNodeWith(t, url, name, nil)
}

// startNodeWith starts a node keeping its sessions and retained messages
// in store; without url, a single server, joined to nothing.
func startNodeWith(t testing.TB, url, name string, store mqtt.Store) *node {
	t.Helper()
	return launch(t, url, name, mqtt.Config{Store: store}, false)
}

// launch starts a node with cfg, joined to the cluster at url unless it is
// empty; with sessions, it keeps them in the cluster (Router.Sessions), as
// a node of thingid does.
func launch(t testing.TB, url, name string, cfg mqtt.Config, sessions bool) *node {
	t.Helper()
	var r *Router
	if url != "" {
		var err error
		if r, err = Dial(url, name, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	return serveNode(t, r, cfg, sessions)
}

// serveNode starts a node's server with cfg (its Auth, Remote and Log set
// here), joined to the cluster through r unless it is nil, and serves MQTT
// on a port of its own.
func serveNode(t testing.TB, r *Router, cfg mqtt.Config, sessions bool) *node {
	t.Helper()
	cfg.Auth, cfg.Log = auth{}, slog.New(slog.DiscardHandler)
	if r != nil {
		cfg.Remote = r
		if sessions {
			var err error
			if cfg.Store, err = r.Sessions(cmp.Or(cfg.Inflight, mqtt.DefaultInflight), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv, err := mqtt.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		if err := r.Start(srv); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{srv: srv, router: r, addr: ln.Addr().String(), ln: ln}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n.wg.Add(1)
			go func() { defer n.wg.Done(); srv.ServeConn(nc) }()
		}
	}()
	t.Cleanup(n.close)
	return n
}

func (n *node) close() {
	n.once.Do(func() {
		n.ln.Close()
		if n.router != nil {
			n.router.Close()
		}
		n.srv.Close()
		n.wg.Wait()
	})
}

// client is a paho MQTT 5 client of a node, with what it receives.
type client struct {
	*paho.Client
	received chan *paho.Publish
	gone     chan *paho.Disconnect // the server's DISCONNECT
	ack      *paho.Connack
}

func dial(t testing.TB, n *node, id, user string) *client {
	t.Helper()
	return dialWith(t, n, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: user})
}

// dialWith connects with cp, which names the client and its session.
func dialWith(t testing.TB, n *node, cp *paho.Connect) *client {
	t.Helper()
	nc, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{received: make(chan *paho.Publish, 1024), gone: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(nc),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.received <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.gone <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	c.ack = ack
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (c *client) subscribe(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
}

func (c *client) publish(t testing.TB, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := c.Publish(ctx, p); err != nil || (r != nil && r.ReasonCode != 0) {
		t.Fatalf("publish %s: %+v, %v", p.Topic, r, err)
	}
}

// takenOver waits for the server's DISCONNECT Session taken over.
func (c *client) takenOver(t testing.TB) {
	t.Helper()
	select {
	case d := <-c.gone:
		if d.ReasonCode != byte(packet.SessionTakenOver) {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not taken over")
	}
}

// expect waits for the next message and checks its topic and payload.
func (c *client) expect(t testing.TB, topic, payload string) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.received:
		if p.Topic != topic || string(p.Payload) != payload {
			t.Fatalf("received %q %q, want %q %q", p.Topic, p.Payload, topic, payload)
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("%q not received", topic)
		return nil
	}
}

// expectNone checks that nothing arrived by the time a later message on
// marker did: NATS keeps one publisher's order.
func (c *client) expectNone(t testing.TB, pub *client, marker string) {
	t.Helper()
	pub.publish(t, &paho.Publish{Topic: marker, QoS: 1, Payload: []byte("marker")})
	c.expect(t, marker, "marker")
}

func TestAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	sub := dial(t, b, "sub", "user")
	sub.subscribe(t, "home/+/temp", 2)
	sub.subscribe(t, "odd/#", 1)
	pub := dial(t, a, "pub", "user")

	// QoS and the message's properties cross; a wildcard matches.
	pub.publish(t, &paho.Publish{Topic: "home/kitchen/temp", QoS: 1, Payload: []byte("21"), Properties: &paho.PublishProperties{
		ContentType: "text/plain", User: paho.UserProperties{{Key: "trace", Value: "t1"}}}})
	p := sub.expect(t, "home/kitchen/temp", "21")
	if p.QoS != 1 || p.Properties.ContentType != "text/plain" || p.Properties.User.Get("trace") != "t1" {
		t.Fatalf("delivered QoS %d %+v", p.QoS, p.Properties)
	}
	// Levels NATS subjects cannot hold as they are.
	for _, topic := range []string{"odd/a.b", "odd/ * >", "odd//x/", "odd/%41"} {
		pub.publish(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
		sub.expect(t, topic, topic)
	}
	// Delivered once, not looped back from NATS onto its own node.
	local := dial(t, a, "local", "user")
	local.subscribe(t, "home/#", 1)
	pub.publish(t, &paho.Publish{Topic: "home/hall/temp", QoS: 1, Payload: []byte("19")})
	local.expect(t, "home/hall/temp", "19")
	sub.expect(t, "home/hall/temp", "19")
	pub.publish(t, &paho.Publish{Topic: "home/marker", QoS: 1, Payload: []byte("m")})
	local.expect(t, "home/marker", "m")
	if a.router.Forwarded.Load() == 0 || b.router.Injected.Load() == 0 || a.router.Failed.Load()+b.router.Failed.Load() != 0 {
		t.Fatalf("a forwarded %d, b injected %d, failed %d+%d", a.router.Forwarded.Load(), b.router.Injected.Load(), a.router.Failed.Load(), b.router.Failed.Load())
	}
	reg := prometheus.NewRegistry()
	if err := a.router.Register(reg); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, reg, "thingid_mqtt_cluster_forwarded_total"); n != float64(a.router.Forwarded.Load()) {
		t.Fatalf("thingid_mqtt_cluster_forwarded_total %v", n)
	}
}

// TestDeliveryRulesAcrossNodes: a message the subscriber's rules deny is
// not delivered on its node, whatever the publisher's node allowed.
func TestDeliveryRulesAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	sub := dial(t, b, "sub", "restricted")
	sub.subscribe(t, "#", 1)
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "secret/key", QoS: 1, Payload: []byte("k")})
	sub.expectNone(t, pub, "open/marker")
}

func TestRetainedAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "state/door", QoS: 1, Retain: true, Payload: []byte("open")})
	watch := dial(t, b, "watch", "user")
	watch.subscribe(t, "state/marker", 1)
	watch.expectNone(t, pub, "state/marker") // the retained message reached b
	late := dial(t, b, "late", "user")
	late.subscribe(t, "state/#", 1)
	if p := late.expect(t, "state/door", "open"); !p.Retain {
		t.Fatal("not delivered as retained")
	}
}

// TestRetainedForLateNodes: a node started after retained messages were
// published, and cleared, has them as the cluster does; one from its own
// store that the cluster cleared meanwhile goes.
func TestRetainedForLateNodes(t *testing.T) {
	url := natstest.Start(t)
	a := startNode(t, url, "a")
	pub := dial(t, a, "pub", "user")
	for topic, payload := range map[string]string{"state/door": "open", "state/lamp": "on", "state/a.b c": "odd"} {
		pub.publish(t, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)})
	}
	pub.publish(t, &paho.Publish{Topic: "state/door", QoS: 1, Retain: true, Payload: []byte("closed")})
	pub.publish(t, &paho.Publish{Topic: "state/lamp", QoS: 1, Retain: true}) // cleared
	b := startNode(t, url, "b")
	if n := b.srv.Retained(); n != 2 {
		t.Fatalf("node b started with %d retained messages, want 2", n)
	}
	late := dial(t, b, "late", "user")
	late.subscribe(t, "state/door", 1)
	if p := late.expect(t, "state/door", "closed"); !p.Retain {
		t.Fatal("not delivered as retained")
	}
	late.subscribe(t, "state/a.b c", 1)
	late.expect(t, "state/a.b c", "odd")

	// Node c keeps retained messages in its store; while it is down, the
	// cluster clears one and sets another.
	dir := t.TempDir()
	open := func() *mqtt.Bolt {
		bolt, err := mqtt.OpenBolt(dir, "mqtt.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bolt.Close() })
		return bolt
	}
	store := open()
	c := startNodeWith(t, url, "c", store)
	if n := c.srv.Retained(); n != 2 {
		t.Fatalf("node c started with %d retained messages, want 2", n)
	}
	c.close()
	store.Close()
	pub.publish(t, &paho.Publish{Topic: "state/door", QoS: 1, Retain: true})
	pub.publish(t, &paho.Publish{Topic: "state/fan", QoS: 1, Retain: true, Payload: []byte("slow")})
	c = startNodeWith(t, url, "c", open())
	watch := dial(t, c, "watch", "user")
	watch.subscribe(t, "state/#", 1)
	got := map[string]string{}
	for range 2 {
		select {
		case p := <-watch.received:
			got[p.Topic] = string(p.Payload)
		case <-time.After(10 * time.Second):
			t.Fatalf("retained messages on node c: %v", got)
		}
	}
	if want := map[string]string{"state/fan": "slow", "state/a.b c": "odd"}; !reflect.DeepEqual(got, want) || c.srv.Retained() != 2 {
		t.Fatalf("node c restarted with %v (%d), want %v", got, c.srv.Retained(), want)
	}
}

// TestNodeDies: with one node closed abruptly, the others route on.
func TestNodeDies(t *testing.T) {
	url := natstest.Start(t)
	a, b, c := startNode(t, url, "a"), startNode(t, url, "b"), startNode(t, url, "c")
	subB, subC := dial(t, b, "sb", "user"), dial(t, c, "sc", "user")
	subB.subscribe(t, "t/#", 1)
	subC.subscribe(t, "t/#", 1)
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "t/1", QoS: 1, Payload: []byte("1")})
	subB.expect(t, "t/1", "1")
	subC.expect(t, "t/1", "1")
	c.close()
	pub.publish(t, &paho.Publish{Topic: "t/2", QoS: 1, Payload: []byte("2")})
	subB.expect(t, "t/2", "2")
	pubC := dial(t, b, "pub2", "user")
	for i := range 3 {
		pubC.publish(t, &paho.Publish{Topic: "t/x", QoS: 0, Payload: []byte(strconv.Itoa(i))})
		subB.expect(t, "t/x", strconv.Itoa(i))
	}
}

// TestTakeoverAcrossNodes: a client identifier connecting on node b ends
// its connection on node a (§3.1.4), which then routes nothing to it.
func TestTakeoverAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	first := dial(t, a, "dev1", "user")
	first.subscribe(t, "cmd/#", 1)
	second := dial(t, b, "dev1", "user")
	first.takenOver(t)
	eventually(t, "the session on node a ended", func() bool { return a.srv.Client("dev1") == nil })
	second.subscribe(t, "cmd/#", 1)
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "cmd/x", QoS: 1, Payload: []byte("go")})
	second.expect(t, "cmd/x", "go")
}

// TestLateAnnouncement: node a's announcement of a client's connection
// reaching node b only after the client connected there again does not
// end the newer connection. The test delivers it late by sending it
// again, as NATS would have delivered it, once b holds the newer one.
func TestLateAnnouncement(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	heard, err := nc.SubscribeSync(sessionSubject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	first := dial(t, a, "dev1", "user")
	announced, err := heard.NextMsg(10 * time.Second)
	if err != nil || announced.Header.Get(hdrNode) != "a" {
		t.Fatalf("node a's announcement: %v %v", announced, err)
	}
	second := dial(t, b, "dev1", "user")
	first.takenOver(t)
	eventually(t, "the session on node a ended", func() bool { return a.srv.Client("dev1") == nil })

	// b handles announcements in order: once the one after the late one
	// ended the connection it names, the late one was handled.
	sync := dial(t, b, "sync", "user")
	late := nats.NewMsg(sessionSubject)
	late.Data, late.Header = announced.Data, announced.Header
	after := nats.NewMsg(sessionSubject)
	after.Data = []byte("sync")
	after.Header.Set(hdrNode, "test")
	after.Header.Set(hdrClaim, strconv.FormatUint(math.MaxUint64, 10))
	for _, m := range []*nats.Msg{late, after} {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	sync.takenOver(t)
	select {
	case d := <-second.gone:
		t.Fatalf("the newer connection on node b ended: 0x%02x", d.ReasonCode)
	default:
	}
	if c := b.srv.Client("dev1"); c == nil || c.Conn() == nil {
		t.Fatal("node b lost the connection")
	}
	second.subscribe(t, "cmd/#", 1)
	pub := dial(t, a, "pub", "user")
	pub.publish(t, &paho.Publish{Topic: "cmd/x", QoS: 1, Payload: []byte("go")})
	second.expect(t, "cmd/x", "go")
}

// counter is the value// counter is the value of the counter name in reg.
func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if g := mf.GetMetric()[0].GetGauge(); g != nil {
				return g.GetValue()
			}
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not so: %s", what)
		}
	}
}

// TestWillOnTakeoverAcrossNodes: the will of a connection that another
// node's takes over is published exactly when one server publishes it
// (§3.1.3.2.2): unless the new connection resumes (Clean Start 0) and the
// will has a delay. Each case runs on one node and across two.
func TestWillOnTakeoverAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	watch := dial(t, a, "watch", "user")
	watch.subscribe(t, "will/#", 1)
	pub := dial(t, a, "pub", "user")
	for i, tc := range []struct {
		delay     uint32
		clean     bool
		published bool
	}{
		{delay: 0, clean: true, published: true},
		{delay: 0, clean: false, published: true},
		{delay: 60, clean: true, published: true},
		{delay: 60, clean: false, published: false},
	} {
		for _, second := range []*node{a, b} {
			id := fmt.Sprintf("dev%d%s", i, second.router.node)
			connect := func(clean bool, will *paho.WillMessage) *paho.Connect {
				expiry := uint32(300)
				cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30, UsernameFlag: true, Username: "user",
					Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}, WillMessage: will}
				if will != nil {
					cp.WillProperties = &paho.WillProperties{WillDelayInterval: &tc.delay}
				}
				return cp
			}
			before := a.srv.Stats.Connected.Load()
			first := dialWith(t, a, connect(true, &paho.WillMessage{Topic: "will/" + id, QoS: 1, Payload: []byte("gone")}))
			dialWith(t, second, connect(tc.clean, nil))
			first.takenOver(t)
			if second == a {
				before++
			}
			// The will is decided as the connection's end is counted.
			eventually(t, "the first connection ended", func() bool { return a.srv.Stats.Connected.Load() == before })
			if tc.published {
				watch.expect(t, "will/"+id, "gone")
			} else {
				watch.expectNone(t, pub, "will/marker")
			}
		}
	}
}

// TestSharedAcrossNodes: the members of a shared subscription on two nodes
// each get a share of the messages published on either node, and every
// message reaches exactly one member of the group (§4.8.2).
func TestSharedAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	a, b := startNode(t, url, "a"), startNode(t, url, "b")
	members := []*client{dial(t, a, "m1", "user"), dial(t, b, "m2", "user"), dial(t, b, "m3", "user")}
	for _, m := range members {
		m.subscribe(t, "$share/workers/jobs/#", 1)
	}
	other := dial(t, b, "other", "user") // another group gets its own copy
	other.subscribe(t, "$share/audit/jobs/+", 1)
	pubs := []*client{dial(t, a, "pa", "user"), dial(t, b, "pb", "user")}

	// count collects n messages across members and fails on any payload
	// delivered twice; it returns how many each member got.
	count := func(members []*client, n int) []int {
		t.Helper()
		seen := map[string]bool{}
		got := make([]int, len(members))
		deadline := time.Now().Add(20 * time.Second)
		for len(seen) < n {
			for i, m := range members {
				select {
				case p := <-m.received:
					if seen[string(p.Payload)] {
						t.Fatalf("%s delivered twice", p.Payload)
					}
					seen[string(p.Payload)] = true
					got[i]++
				case <-time.After(10 * time.Millisecond):
				}
			}
			if len(seen) < n && time.Now().After(deadline) {
				t.Fatalf("%d of %d messages delivered", len(seen), n)
			}
		}
		return got
	}
	const n = 200
	for i := range n {
		pubs[i%2].publish(t, &paho.Publish{Topic: "jobs/" + strconv.Itoa(i%7), QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	got := count(members, n)
	if got[0] == 0 || got[1]+got[2] == 0 {
		t.Fatalf("node a's member got %d, node b's %d and %d: not spread over the nodes", got[0], got[1], got[2])
	}
	count([]*client{other}, n)
	// A last message, after which nothing more arrives for anyone.
	pubs[0].publish(t, &paho.Publish{Topic: "jobs/last", QoS: 1, Payload: []byte("last")})
	count(members, 1)
	count([]*client{other}, 1)
	for _, m := range members {
		if len(m.received) > 0 {
			t.Fatalf("a message delivered twice: %s", (<-m.received).Payload)
		}
	}
	t.Logf("shares of %d messages: node a %d, node b %d and %d", n, got[0], got[1], got[2])

	// Node a's member leaves: node a leaves the group, b's members get all.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := members[0].Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"$share/workers/jobs/#"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		pubs[0].publish(t, &paho.Publish{Topic: "jobs/x", QoS: 1, Payload: []byte("after" + strconv.Itoa(i))})
	}
	count(members[1:], 20)
	if a.router.Failed.Load()+b.router.Failed.Load() != 0 {
		t.Fatalf("failed: %d+%d", a.router.Failed.Load(), b.router.Failed.Load())
	}
}

// TestSharedRestored: a node that restores a persistent session with a
// shared subscription from its store joins the group as it starts, and
// keeps the group's messages for the session until its client returns.
func TestSharedRestored(t *testing.T) {
	url := natstest.Start(t)
	a := startNode(t, url, "a")
	bolt, err := mqtt.OpenBolt(t.TempDir(), "mqtt.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() }) // after the node's
	b := startNodeWith(t, url, "b", bolt)
	expiry := uint32(300)
	connect := func(clean bool) *paho.Connect {
		return &paho.Connect{ClientID: "worker", CleanStart: clean, KeepAlive: 30, UsernameFlag: true, Username: "user",
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	w := dialWith(t, b, connect(true))
	w.subscribe(t, "$share/g/jobs/+", 1)
	b.close()
	b = startNodeWith(t, url, "b", bolt)
	pub := dial(t, a, "pub", "user")
	// Published while the session is away: only the group node b joined
	// as it started takes it (the client subscribes no more).
	pub.publish(t, &paho.Publish{Topic: "jobs/1", QoS: 1, Payload: []byte("one")})
	w = dialWith(t, b, connect(false))
	w.expect(t, "jobs/1", "one")
}
