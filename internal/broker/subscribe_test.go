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
	stop, err := e.b.SubscribeAsThing(ctx, th.ID, "", cmd+"#", func(d Delivered) { got <- d }, nil)
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
	stopWitness, err := e.b.SubscribeAsThing(ctx, th.ID, "", cmd+"setpoint", func(d Delivered) { witness <- d }, nil)
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
		if _, err := e.b.SubscribeAsThing(ctx, th.ID, "", c.filter, func(Delivered) {}, nil); !errors.Is(err, c.want) {
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
	if _, err := e.b.SubscribeAsThing(ctx, th.ID, "", cmd+"#", func(Delivered) {}, nil); !errors.Is(err, ErrInactive) {
		t.Errorf("a disabled thing: %v", err)
	}
}

// A thing's subscription through another door is re-checked on the events
// that re-check its MQTT connection: when a change of the thing takes a
// filter out of its rules (its model, named by ${thing.model}), that
// subscription ends with ErrNotAllowed and gets nothing more, while one
// the rules still give goes on; unlinking the thing from its owner ends
// what ${owner.id} gave, disabling it ends the rest (ErrInactive). A
// stopped subscription hears of no event. Tries to keep receiving a
// model's firmware after the thing stopped being that model.
func TestSubscribeAsThingRecheckedOnChanges(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Rules = append(slices.Clone(testRules), Rule{Who: WhoThing, Subscribe: []string{"models/${thing.model}/#", "homes/${owner.id}/#"}})
	})
	ctx := context.Background()
	th, u := e.thing("T-300"), e.user("owner-300")
	e.own(u, th)
	svc := e.mustConnect5("svc", e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:pub:#"}}))
	type sub struct {
		got   chan Delivered
		ended chan error
		stop  func()
	}
	subscribe := func(filter string) *sub {
		t.Helper()
		s := &sub{got: make(chan Delivered, 10), ended: make(chan error, 1)}
		var err error
		s.stop, err = e.b.SubscribeAsThing(ctx, th.ID, "", filter, func(d Delivered) { s.got <- d }, func(err error) { s.ended <- err })
		if err != nil {
			t.Fatalf("subscribing to %s: %v", filter, err)
		}
		return s
	}
	endedWith := func(s *sub, want error) {
		t.Helper()
		select {
		case err := <-s.ended:
			if !errors.Is(err, want) {
				t.Fatalf("ended with %v, want %v", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the subscription did not end")
		}
	}
	receives := func(s *sub, topic, payload string) {
		t.Helper()
		svc.pub(t, topic, 1, payload)
		select {
		case d := <-s.got:
			if string(d.Payload) != payload {
				t.Fatalf("got %q, want %q", d.Payload, payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing on %s", topic)
		}
	}
	firmware, home, cmds, stopped := subscribe("models/T-300/firmware"), subscribe("homes/"+u.ID+"/#"), subscribe("things/"+th.ID+"/commands/#"), subscribe("models/T-300/#")
	stopped.stop()
	receives(firmware, "models/T-300/firmware", "v1")

	if _, err := e.ids.UpdateThing(ctx, "test", th.ID, 0, func(x *store.Thing) error { x.Model = "T-301"; return nil }); err != nil {
		t.Fatal(err)
	}
	endedWith(firmware, ErrNotAllowed)
	svc.pub(t, "models/T-300/firmware", 1, "v2")
	receives(cmds, "things/"+th.ID+"/commands/mode", "eco") // after v2 on the same path
	select {
	case d := <-firmware.got:
		t.Fatalf("delivered after the subscription ended: %+v", d)
	default:
	}
	receives(home, "homes/"+u.ID+"/scene", "night")

	if err := e.ids.RemoveRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
		t.Fatal(err)
	}
	endedWith(home, ErrInactive)
	endedWith(cmds, ErrInactive) // an unlinked thing's subscriptions all end, as its connections do
	select {
	case err := <-stopped.ended:
		t.Fatalf("a stopped subscription was told it ended: %v", err)
	default:
	}
}
