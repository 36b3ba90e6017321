package broker

import (
	"context"
	"errors"
	"testing"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// PublishAsThing applies the thing's topic rules and its status exactly as
// a connection with its certificate gets them, and what it publishes
// reaches subscribers by their own rules.
func TestPublishAsThing(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	th, other := e.thing("T-100"), e.thing("T-100")
	svc := e.mustConnect5("svc", e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:sub:things/+/telemetry"}}))
	svc.sub(t, "things/+/telemetry", 1)

	if err := e.b.PublishAsThing(ctx, th.ID, "", "things/"+th.ID+"/telemetry", []byte("21.5"), 1, "text/plain;charset=utf-8"); err != nil {
		t.Fatal(err)
	}
	if m := svc.expect(t, "things/"+th.ID+"/telemetry"); string(m.Payload) != "21.5" || m.Properties.ContentType != "text/plain;charset=utf-8" {
		t.Fatalf("received %q (%s)", m.Payload, m.Properties.ContentType)
	}
	for _, c := range []struct {
		topic string
		want  error
	}{
		{"things/" + other.ID + "/telemetry", ErrNotAllowed},
		{"things/+/telemetry", ErrTopic},
		{"", ErrTopic},
		{"$SYS/broker/uptime", ErrNotAllowed},
	} {
		if err := e.b.PublishAsThing(ctx, th.ID, "", c.topic, []byte("x"), 0, ""); !errors.Is(err, c.want) {
			t.Errorf("topic %q: %v, want %v", c.topic, err, c.want)
		}
	}
	if _, err := e.ids.UpdateThing(ctx, "test", th.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.b.PublishAsThing(ctx, th.ID, "", "things/"+th.ID+"/telemetry", []byte("x"), 0, ""); !errors.Is(err, ErrInactive) {
		t.Errorf("a disabled thing: %v", err)
	}
	svc.none(t, "things/"+other.ID+"/telemetry")
}
