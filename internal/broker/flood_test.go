package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Four things flood one subscriber whose write queue holds 8 packets. What
// does not fit is dropped and counted, never corrupted, no publisher is
// disconnected, and once the subscriber is idle again a QoS 0 and a QoS 1
// message reach it intact. Nothing here depends on timing: the broker's drop
// counter says how many flood messages must arrive, and once they have, the
// queue is empty.
func TestFloodIntoOneSubscriber(t *testing.T) {
	const publishers, perPublisher = 4, 1000
	e := newEnv(t, func(o *Options) { o.Limits.Queue = 8 })
	sub := e.mustConnect5("svc", e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:sub:things/+/telemetry"}}))
	if rc := sub.sub(t, "things/+/telemetry", 1); rc != 1 {
		t.Fatalf("subscribe: %#x", rc)
	}
	things := make([]*store.Thing, publishers)
	pubs := make([]*client5, publishers)
	for i := range things {
		things[i] = e.thing("M")
		pubs[i] = e.mustConnect5(things[i].ID, e.thingToken(things[i]))
	}

	dropped := e.b.server.Stats.Dropped.Load()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Go(func() {
			topic := "things/" + things[i].ID + "/telemetry"
			for n := range perPublisher {
				if _, err := p.Publish(ctx, &paho.Publish{Topic: topic, Payload: fmt.Appendf(nil, "%d-%04d", i, n)}); err != nil {
					t.Errorf("publisher %d, message %d: %v", i, n, err)
					return
				}
			}
			// The PUBACK of a QoS 1 message nobody reads says that the
			// broker has routed (queued or dropped) every earlier one.
			if r, err := p.Publish(ctx, &paho.Publish{Topic: "things/" + things[i].ID + "/status", QoS: 1, Payload: []byte("done")}); err != nil || r.ReasonCode != 0 {
				t.Errorf("publisher %d, last message: %v %v", i, r, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for flooding := true; flooding; { // keep the subscriber's handler from blocking
		select {
		case <-sub.msgs:
		case <-done:
			flooding = false
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	dropped = e.b.server.Stats.Dropped.Load() - dropped
	want := publishers*perPublisher - int(dropped)
	sub.waitCount(t, want)

	topic := "things/" + things[0].ID + "/telemetry"
	pubs[0].pub(t, topic, 0, "idle QoS 0")
	if rc := pubs[0].pub(t, topic, 1, "idle QoS 1"); rc != 0 {
		t.Fatalf("idle QoS 1: PUBACK %#x", rc)
	}
	sub.waitCount(t, want+2)

	sub.mu.Lock()
	defer sub.mu.Unlock()
	if len(sub.got) != want+2 {
		t.Errorf("received %d messages, want %d (%d dropped) and the 2 idle ones", len(sub.got), want+2, dropped)
	}
	next := make([]int, publishers) // messages of one publisher arrive in order
	for _, m := range sub.got[:want] {
		var i, n int
		if _, err := fmt.Sscanf(string(m.Payload), "%d-%04d", &i, &n); err != nil || i < 0 || i >= publishers || n < next[i] ||
			m.Topic != "things/"+things[i].ID+"/telemetry" || string(m.Payload) != fmt.Sprintf("%d-%04d", i, n) {
			t.Fatalf("corrupted or out of order: %q on %s", m.Payload, m.Topic)
		}
		next[i] = n + 1
	}
	for k, w := range []struct {
		payload string
		qos     byte
	}{{"idle QoS 0", 0}, {"idle QoS 1", 1}} {
		if m := sub.got[want+k]; m.Topic != topic || string(m.Payload) != w.payload || m.QoS != w.qos {
			t.Errorf("idle message %d: %q at QoS %d on %s, want %q at QoS %d", k, m.Payload, m.QoS, m.Topic, w.payload, w.qos)
		}
	}
	for _, c := range append(pubs, sub) {
		c.connected(t, "a flooding client or the subscriber")
	}
	t.Logf("%d of %d flood messages dropped at the full queue", dropped, publishers*perPublisher)
}

// waitCount waits until n messages have been received.
func (c *client5) waitCount(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.got)
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.msgs:
		case <-timeout:
			t.Fatalf("received %d messages, want %d", got, n)
		}
	}
}
