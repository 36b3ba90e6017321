package broker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// SubscribeAsThing applies the thing's subscribe rules and its status
// exactly as a connection with its certificate gets them: its own command
// topic is granted, with the retained message first and then what a
// service publishes over MQTT; another thing's is refused, as are a deny
// rule at delivery and a thing disabled. Tries to observe another thing's
// commands, a shared subscription and a denied topic under an allowed
// filter.
func TestSubscribeAsThing(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Rules = append(slices.Clone(testRules), Rule{Who: WhoThing, Deny: Deny{Subscribe: []string{"things/+/commands/secret"}}})
	})
	ctx := context.Background()
	th, other := e.thing("T-200"), e.thing("T-200")
	svc := e.mustConnect5("svc", e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:pub:things/#"}}))
	cmd := "things/" + th.ID + "/commands/"
	if r, err := svc.Publish(ctx, &paho.Publish{Topic: cmd + "mode", QoS: 1, Retain: true, Payload: []byte("eco"),
		Properties: &paho.PublishProperties{ContentType: "text/plain"}}); err != nil || r.ReasonCode != 0 {
		t.Fatalf("retained publish: %v %v", r, err)
	}

	got := make(chan Delivered, 10)
	stop, err := e.b.SubscribeAsThing(ctx, th.ID, "", cmd+"#", func(d Delivered) { got <- d })
	if err != nil {
		t.Fatal(err)
	}
	next := func() Delivered {
		t.Helper()
		select {
		case d := <-got:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("nothing delivered")
			return Delivered{}
		}
	}
	if d := next(); d.Topic != cmd+"mode" || string(d.Payload) != "eco" || d.ContentType != "text/plain" {
		t.Fatalf("retained: %+v", d)
	}
	svc.pub(t, cmd+"secret", 1, "hidden") // denied at delivery
	svc.pub(t, "things/"+other.ID+"/commands/mode", 1, "not yours")
	svc.pub(t, cmd+"setpoint", 1, "21")
	if d := next(); d.Topic != cmd+"setpoint" || string(d.Payload) != "21" {
		t.Fatalf("live: %+v (a denied or foreign message came first?)", d)
	}
	// A second subscription hears the next message on the same path the
	// first would have: once it has, the stopped one got nothing.
	witness := make(chan Delivered, 1)
	stopWitness, err := e.b.SubscribeAsThing(ctx, th.ID, "", cmd+"setpoint", func(d Delivered) { witness <- d })
	if err != nil {
		t.Fatal(err)
	}
	defer stopWitness()
	stop()
	svc.pub(t, cmd+"setpoint", 1, "22")
	select {
	case <-witness:
	case <-time.After(5 * time.Second):
		t.Fatal("the witness got nothing")
	}
	select {
	case d := <-got:
		t.Fatalf("delivered after stop: %+v", d)
	default:
	}

	if d, ok, err := e.b.RetainedAsThing(ctx, th.ID, "", cmd+"mode"); err != nil || !ok || string(d.Payload) != "eco" {
		t.Fatalf("RetainedAsThing: %+v %v %v", d, ok, err)
	}
	if _, ok, err := e.b.RetainedAsThing(ctx, th.ID, "", cmd+"none"); err != nil || ok {
		t.Fatalf("RetainedAsThing of an empty topic: %v %v", ok, err)
	}
	for _, c := range []struct {
		filter string
		want   error
	}{
		{"things/" + other.ID + "/commands/#", ErrNotAllowed},
		{"things/#", ErrNotAllowed},
		{"$share/g/" + cmd + "#", ErrTopic},
		{"things/#/x", ErrTopic},
		{"", ErrTopic},
	} {
		if _, err := e.b.SubscribeAsThing(ctx, th.ID, "", c.filter, func(Delivered) {}); !errors.Is(err, c.want) {
			t.Errorf("filter %q: %v, want %v", c.filter, err, c.want)
		}
	}
	for _, c := range []struct {
		topic string
		want  error
	}{
		{"things/" + other.ID + "/commands/mode", ErrNotAllowed},
		{cmd + "secret", ErrNotAllowed},
		{cmd + "+", ErrTopic},
	} {
		if _, _, err := e.b.RetainedAsThing(ctx, th.ID, "", c.topic); !errors.Is(err, c.want) {
			t.Errorf("retained %q: %v, want %v", c.topic, err, c.want)
		}
	}
	if _, err := e.ids.UpdateThing(ctx, "test", th.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.SubscribeAsThing(ctx, th.ID, "", cmd+"#", func(Delivered) {}); !errors.Is(err, ErrInactive) {
		t.Errorf("a disabled thing: %v", err)
	}
}
