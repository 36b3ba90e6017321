package broker

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/mqttnats"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// twoNodes starts a nats-server and two brokers joined through it, with
// nodeTTL for their liveness keys (0: the default): e on node a, tuned by
// tune, and other on node b, with the same store and keys and a broker,
// data directory and TLS listener of its own.
func twoNodes(t *testing.T, nodeTTL time.Duration, tune func(*Options)) (e, other *env) {
	url := natstest.Start(t)
	cluster := func(node string) Cluster {
		r, err := mqttnats.Dial(url, node, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if nodeTTL > 0 {
			r.NodeTTL = nodeTTL
		}
		return r
	}
	var tlsB Listener
	e = newEnv(t, func(o *Options) {
		if tune != nil {
			tune(o)
		}
		o.Cluster = cluster("a")
		tlsB = o.Listeners[0]
		tlsB.TLS = tlsB.TLS.Clone()
	})
	b := *e
	b.opts.Dir, b.opts.Cluster, b.opts.Listeners = t.TempDir(), cluster("b"), []Listener{tlsB}
	b.start()
	return e, &b
}

// No identity can resume another identity's persistent session on another
// node of a cluster by naming its client id: the node reads the session
// from the cluster before the broker decides, so the owner check sees the
// identity stored with it (session_owner, 0x85), and its owner resumes it
// there.
func TestAttackSessionTakeoverAcrossNodes(t *testing.T) {
	e, other := twoNodes(t, 0, nil)

	alice, bob := e.user("alice"), e.user("bob")
	expiry := uint32(3600)
	cp := func(tok string, clean bool) *paho.Connect {
		return &paho.Connect{ClientID: "shared-name", CleanStart: clean, Password: []byte(tok), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	c, _, err := e.connect5(e.dial("tls"), cp(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}), true))
	if err != nil {
		t.Fatal(err)
	}
	c.Disconnect(&paho.Disconnect{})
	for _, clean := range []bool{false, true} {
		if code, _ := other.connackCode("tls", cp(e.token(tokens.Claims{Subject: bob.ID, ClientID: "app"}), clean)); code != 0x85 {
			t.Errorf("bob took alice's session on another node (clean start %v): %#x", clean, code)
		}
	}
	c, ca, err := other.connect5(other.dial("tls"), cp(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}), false))
	if err != nil {
		t.Fatalf("alice cannot resume her session on another node: %v", err)
	}
	if !ca.SessionPresent {
		t.Error("alice's session is not present on another node")
	}
	c.Disconnect(&paho.Disconnect{})
}

// A thing disabled while no node hears of it for its session (here in the
// store alone, as when its node is down) publishes no will when another
// node takes its session over: the identity the session's record carries
// is read again from the store before the will goes. An enabled one's
// will goes, from the other node.
func TestAttackWillOfDisabledThingAcrossNodes(t *testing.T) {
	e, other := twoNodes(t, time.Second, nil)

	owner := e.user("owner")
	kept, disabled := e.thing("W"), e.thing("W")
	e.own(owner, kept)
	e.own(owner, disabled)
	watch, _, err := other.connect5(other.dial("tls"), &paho.Connect{ClientID: "watch", CleanStart: true,
		Password: []byte(e.token(tokens.Claims{Subject: owner.ID, ClientID: "app"})), PasswordFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range []*store.Thing{kept, disabled} {
		if code := watch.sub(t, "things/"+th.ID+"/status", 1); code != 1 {
			t.Fatalf("subscribe: %#x", code)
		}
	}
	expiry, delay := uint32(3600), uint32(1)
	for _, th := range []*store.Thing{kept, disabled} {
		c, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: true, Password: []byte(e.thingToken(th)), PasswordFlag: true,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage:    &paho.WillMessage{Topic: "things/" + th.ID + "/status", QoS: 1, Payload: []byte("offline")},
			WillProperties: &paho.WillProperties{WillDelayInterval: &delay}})
		if err != nil {
			t.Fatal(err)
		}
		c.pub(t, "things/"+th.ID+"/telemetry", 1, "up") // answered once its record is written
	}
	if _, err := e.st.UpdateThing(context.Background(), disabled.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	e.b.Close() // node a ends: its sessions, wills waiting, are node b's to take
	watch.expect(t, "things/"+kept.ID+"/status")
	time.Sleep(2 * time.Second) // past the delay of the other's will
	watch.none(t, "things/"+disabled.ID+"/status")
	if n := other.b.server.Stats.DeniedPublish.Load(); n != 1 {
		t.Fatalf("node b refused %d wills, want the disabled thing's", n)
	}
}

// A thing taking its client identifier back, on node b, from another
// identity's session node a holds discards that session with its will
// (TestThingReclaimsSquattedSession, across nodes): the clean start's node,
// which publishes the will of the session it ends, refuses the revoked
// identity's, and node a leaves the will to it.
func TestAttackSquatterWillAcrossNodes(t *testing.T) {
	dir := &preFix{}
	e, other := twoNodes(t, 0, func(o *Options) { dir.Directory, o.Directory = o.Directory, dir })

	th, alice := e.thing("T-200"), e.user("alice")
	e.own(alice, th)
	watcher := e.watch(t, alice, th.ID)
	expiry := uint32(604800)
	willTopic := "things/" + th.ID + "/commands/squatter-will"
	dir.hide.Store(true)
	squatter, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, PasswordFlag: true,
		Password:    []byte(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app", Scope: []string{"mqtt:pub:" + willTopic}})),
		Properties:  &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage: &paho.WillMessage{Topic: willTopic, QoS: 1, Payload: []byte("gone")}})
	if err != nil {
		t.Fatal(err)
	}
	squatter.pub(t, willTopic, 1, "alive") // answered once its record is written
	watcher.expect(t, willTopic)
	dir.hide.Store(false)

	device, ca, err := other.connect5(other.dial("tls"), &paho.Connect{ClientID: th.ID, PasswordFlag: true,
		Password: []byte(e.thingToken(th)), Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil || ca.SessionPresent {
		t.Fatalf("the thing on node b: %v %+v", err, ca)
	}
	select {
	case <-squatter.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the squatter's connection on node a did not end")
	}
	if n := other.b.server.Stats.DeniedPublish.Load(); n != 1 {
		t.Fatalf("node b refused %d wills, want the squatter's", n)
	}
	device.pub(t, "things/"+th.ID+"/telemetry", 1, "up")
	watcher.expect(t, "things/"+th.ID+"/telemetry")
	watcher.mu.Lock()
	defer watcher.mu.Unlock()
	for _, m := range watcher.got {
		if m.Topic == willTopic && string(m.Payload) == "gone" {
			t.Fatal("the squatter's will was published when the thing took its identifier back on another node")
		}
	}
}
