package broker

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// MQTT 3.1.1 clients (paho.mqtt.golang): the token is the password (3.1.1
// needs a user name with it; it is ignored), refusals are the 3.1.1 return
// codes, and a publish without permission ends the connection (3.1.1 has no
// negative PUBACK).
func TestMQTT311(t *testing.T) {
	e := newEnv(t, nil)
	th, other := e.thing("T-100"), e.thing("T-100")
	opts := func(clientID, token string) *mqtt3.ClientOptions {
		return mqtt3.NewClientOptions().AddBroker("ssl://" + e.b.Addr("tls")).
			SetTLSConfig(&tls.Config{RootCAs: e.pool, ServerName: "localhost"}).
			SetClientID(clientID).SetUsername("device").SetPassword(token).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetProtocolVersion(4)
	}
	for name, tc := range map[string]struct {
		clientID, token, want string
	}{
		"bad token":                  {th.ID, "not-a-token", "bad user name or password"},
		"client id of another thing": {other.ID, e.thingToken(th), "identifier rejected"},
	} {
		c := mqtt3.NewClient(opts(tc.clientID, tc.token))
		tok := c.Connect()
		tok.WaitTimeout(5 * time.Second)
		if tok.Error() == nil || !strings.Contains(strings.ToLower(tok.Error().Error()), tc.want) {
			t.Errorf("%s: %v, want %q", name, tok.Error(), tc.want)
		}
	}

	received := make(chan string, 10)
	device := mqtt3.NewClient(opts(th.ID, e.thingToken(th)))
	if tok := device.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer device.Disconnect(100)
	sub := device.Subscribe("#", 0, nil)
	sub.WaitTimeout(5 * time.Second)
	if r := sub.(*mqtt3.SubscribeToken).Result()["#"]; r != 0x80 {
		t.Errorf("subscribe #: %#x", r)
	}
	sub = device.Subscribe("things/"+th.ID+"/commands/#", 1, func(_ mqtt3.Client, m mqtt3.Message) { received <- m.Topic() })
	sub.WaitTimeout(5 * time.Second)
	if r := sub.(*mqtt3.SubscribeToken).Result()["things/"+th.ID+"/commands/#"]; r != 1 {
		t.Errorf("subscribe to its commands: %#x", r)
	}
	pub := device.Publish("things/"+th.ID+"/telemetry", 1, false, "21")
	if !pub.WaitTimeout(5*time.Second) || pub.Error() != nil {
		t.Errorf("publish: %v", pub.Error())
	}
	device.Publish("things/"+other.ID+"/commands/unlock", 1, false, "x")
	deadline := time.Now().Add(10 * time.Second)
	for device.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if device.IsConnectionOpen() {
		t.Error("a forbidden publish did not end the 3.1.1 connection")
	}
}
