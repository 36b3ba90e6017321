package broker

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/tokens"
)

// The seed's story: a thermostat publishes telemetry and receives commands,
// its owner's app reads it, a cloud service reads every thing's telemetry
// and sends commands.
func TestStory(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	alice := e.user("alice")
	e.own(alice, th)

	device := e.mustConnect5(th.ID, e.thingToken(th))
	app := e.mustConnect5("alice-phone", e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}))
	svc := e.mustConnect5("cloud", e.token(tokens.Claims{Subject: "cloud", ClientID: "cloud",
		Scope: []string{"mqtt:sub:things/+/telemetry", "mqtt:pub:things/+/commands/#"}}))

	if rc := device.sub(t, "things/"+th.ID+"/commands/#", 1); rc != 1 {
		t.Fatalf("device subscribe to its commands: %#x", rc)
	}
	if rc := app.sub(t, "things/"+th.ID+"/#", 1); rc != 1 {
		t.Fatalf("owner subscribe to its thing: %#x", rc)
	}
	if rc := svc.sub(t, "things/+/telemetry", 1); rc != 1 {
		t.Fatalf("service subscribe: %#x", rc)
	}
	if rc := device.pub(t, "things/"+th.ID+"/telemetry", 1, "21.5"); rc != 0 {
		t.Fatalf("device publish: %#x", rc)
	}
	if m := app.expect(t, "things/"+th.ID+"/telemetry"); string(m.Payload) != "21.5" {
		t.Errorf("app got %q", m.Payload)
	}
	svc.expect(t, "things/"+th.ID+"/telemetry")
	if rc := svc.pub(t, "things/"+th.ID+"/commands/setpoint", 1, "20"); rc != 0 {
		t.Fatalf("service command: %#x", rc)
	}
	device.expect(t, "things/"+th.ID+"/commands/setpoint")
}

func TestConnackReasons(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	if code, reason := e.connackCode("tls", &paho.Connect{ClientID: th.ID}); code != 0x87 {
		t.Errorf("no credentials: %#x %s", code, reason)
	}
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: th.ID, Password: []byte("not a token"), PasswordFlag: true}); code != 0x86 {
		t.Errorf("garbage token: %#x", code)
	}
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: th.ID, Properties: &paho.ConnectProperties{AuthMethod: "SCRAM-SHA-256"}}); code != 0x8C {
		t.Errorf("unknown auth method: %#x", code)
	}
	// The token as Authentication Data under AuthMethod works too.
	if code, reason := e.connackCode("tls", &paho.Connect{ClientID: th.ID, Properties: &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(e.thingToken(th))}}); code != 0 {
		t.Errorf("token as authentication data: %#x %s", code, reason)
	}
}
