package broker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/tokens"
)

// A deny list wins over every allow: a service allowed things/# (by its
// token's scope) may not read things/secret, neither by subscribing to it
// nor through things/#, live or retained, and may not publish to a denied
// topic its scope allows. Tries to read things/secret under things/#.
func TestDenyWinsOverAllow(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Rules = append(slices.Clone(testRules), Rule{Who: WhoService, Deny: Deny{
			Subscribe: []string{"things/secret", "things/+/keys/#"},
			Publish:   []string{"things/secret"},
		}})
	})
	service := func(name string, scope string) *client5 {
		return e.mustConnect5(name, e.token(tokens.Claims{Subject: name, ClientID: name, Scope: []string{scope}}))
	}
	// The rule is for services: a user's app may publish the secrets.
	alice := e.user("alice")
	app := e.mustConnect5("alice-app", e.token(tokens.Claims{Subject: alice.ID, ClientID: "app", Scope: []string{"mqtt:pub:things/#"}}))
	publish := func(topic string, retain bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if r, err := app.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte("x")}); err != nil || r.ReasonCode != 0 {
			t.Fatalf("publish %s: %v %v", topic, r, err)
		}
	}
	publish("things/secret", true) // retained, before the reader subscribes

	writer := service("writer", "mqtt:pub:things/#")
	if rc := writer.pub(t, "things/secret", 1, "denied"); rc != 0x87 {
		t.Errorf("publishing to a denied topic: PUBACK %#x, want 0x87", rc)
	}
	if rc := writer.pub(t, "things/open", 1, "allowed"); rc != 0 {
		t.Errorf("publishing to an allowed topic: PUBACK %#x", rc)
	}

	reader := service("reader", "mqtt:sub:things/#")
	for _, f := range []string{"things/secret", "things/t1/keys/#", "things/t1/keys/k1", "$share/g/things/secret"} {
		if rc := reader.sub(t, f, 1); rc != 0x87 {
			t.Errorf("subscribing to denied %s: %#x, want 0x87", f, rc)
		}
	}
	if rc := reader.sub(t, "things/#", 1); rc != 1 {
		t.Fatalf("subscribing to things/#: %#x", rc)
	}
	publish("things/secret", false)
	publish("things/t1/keys/k1", false)
	publish("things/open", false)
	// things/open was published last: once it arrived, nothing before it
	// is still on its way.
	reader.expect(t, "things/open")
	reader.none(t, "things/secret")
	reader.none(t, "things/t1/keys/k1")
}
