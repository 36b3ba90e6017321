package broker

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Retained messages and a persistent session with its QoS 1 messages
// survive a restart; messages published after the restart, while the
// device is still away, are queued for it too.
func TestPersistenceAcrossRestart(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	expiry := uint32(3600)
	persistent := func() *paho.Connect {
		return &paho.Connect{ClientID: th.ID, CleanStart: false, Password: []byte(e.thingToken(th)), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	svcToken := func() string {
		return e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:pub:things/+/commands/#", "mqtt:sub:things/+/commands/#"}})
	}
	device, _, err := e.connect5(e.dial("tls"), persistent())
	if err != nil {
		t.Fatal(err)
	}
	device.sub(t, "things/"+th.ID+"/commands/#", 1)
	device.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &expiry}})

	svc := e.mustConnect5("svc", svcToken())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := svc.Publish(ctx, &paho.Publish{Topic: "things/" + th.ID + "/commands/config", QoS: 1, Retain: true, Payload: []byte("retained")}); err != nil {
		t.Fatal(err)
	}
	svc.pub(t, "things/"+th.ID+"/commands/before", 1, "queued before the restart")
	svc.Disconnect(&paho.Disconnect{})

	e.b.Close()
	e.start()

	svc = e.mustConnect5("svc", svcToken())
	svc.pub(t, "things/"+th.ID+"/commands/after", 1, "queued after the restart")
	device, ca, err := e.connect5(e.dial("tls"), persistent())
	if err != nil {
		t.Fatal(err)
	}
	if !ca.SessionPresent {
		t.Error("session not present after the restart")
	}
	device.expect(t, "things/"+th.ID+"/commands/before")
	device.expect(t, "things/"+th.ID+"/commands/after")
	// A new subscriber gets the retained message.
	svc.sub(t, "things/"+th.ID+"/commands/config", 1)
	if m := svc.expect(t, "things/"+th.ID+"/commands/config"); string(m.Payload) != "retained" {
		t.Errorf("retained payload %q", m.Payload)
	}
}

// Messages queued for an away session are checked again when it resumes:
// the owner's app was unlinked from the thing meanwhile, so what the thing
// published for it is not delivered (every resent message is a delivery,
// checked again).
func TestQueuedMessagesRecheckedOnResume(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	alice := e.user("alice")
	e.own(alice, th)
	expiry := uint32(3600)
	app := func() *paho.Connect {
		return &paho.Connect{ClientID: "alice-app", CleanStart: false, Password: []byte(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"})), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	c, _, err := e.connect5(e.dial("tls"), app())
	if err != nil {
		t.Fatal(err)
	}
	c.sub(t, "things/"+th.ID+"/#", 1)
	c.Disconnect(&paho.Disconnect{})

	device := e.mustConnect5(th.ID, e.thingToken(th))
	device.pub(t, "things/"+th.ID+"/telemetry", 1, "private")
	rel := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: alice.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}
	if err := e.ids.RemoveRelationship(context.Background(), "test", rel); err != nil {
		t.Fatal(err)
	}
	// The device was unlinked, so its connection ended: a new owner pairs it.
	bob := e.user("bob")
	e.own(bob, th)
	device = e.mustConnect5(th.ID, e.thingToken(th))

	other := e.thing("T-100")
	e.own(alice, other)
	c, ca, err := e.connect5(e.dial("tls"), app())
	if err != nil {
		t.Fatal(err)
	}
	if !ca.SessionPresent {
		t.Fatal("session not present")
	}
	// Queued messages are resent right after CONNACK, so they would arrive
	// before the sentinel.
	c.sub(t, "things/"+other.ID+"/#", 1)
	deviceOther := e.mustConnect5(other.ID, e.thingToken(other))
	deviceOther.pub(t, "things/"+other.ID+"/telemetry", 1, "sentinel")
	c.expect(t, "things/"+other.ID+"/telemetry")
	c.none(t, "things/"+th.ID+"/telemetry")
	_ = device
}
