package mqtt

import (
	"testing"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

func authPacket(code packet.ReasonCode, data string) *packet.Auth {
	a := &packet.Auth{Code: code}
	a.Props.AuthMethod, a.Props.AuthData = challengeMethod, []byte(data)
	a.Props.Set(packet.PropAuthMethod)
	a.Props.Set(packet.PropAuthData)
	return a
}

// expectChallenge reads AUTH 0x18 carrying "nonce".
func expectChallenge(t *testing.T, c *mqtttest.Conn) {
	t.Helper()
	a, ok := c.Read().(*packet.Auth)
	if !ok || a.Code != packet.ContinueAuthentication || string(a.Props.AuthData) != "nonce" || a.Props.AuthMethod != challengeMethod {
		t.Fatalf("got %+v, want AUTH 0x18 with the nonce", a)
	}
}

// TestEnhancedAuth: MQTT 5 enhanced authentication (§4.12) at CONNECT and
// again later, in as many AUTH rounds as Auth asks for; a wrong answer or
// another packet in the middle refuses.
func TestEnhancedAuth(t *testing.T) {
	s := newServer(t, nil)
	connect := func(id string) *mqtttest.Conn {
		c := s.dial(t, packet.V5)
		pk := &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: id}
		pk.Props.AuthMethod = challengeMethod
		pk.Props.Set(packet.PropAuthMethod)
		c.Send(pk)
		expectChallenge(t, c)
		return c
	}

	c := connect("good")
	c.Send(authPacket(packet.ContinueAuthentication, "nonce:ok"))
	if a := c.Read().(*packet.Connack); a.Code != packet.Success {
		t.Fatalf("%+v", a)
	}
	c.Send(authPacket(packet.ReAuthenticate, ""))
	expectChallenge(t, c)
	c.Send(authPacket(packet.ContinueAuthentication, "nonce:ok"))
	if a := c.Read().(*packet.Auth); a.Code != packet.Success {
		t.Fatalf("re-authentication: %+v", a)
	}
	c.Send(authPacket(packet.ContinueAuthentication, "nonce:ok")) // out of turn
	c.Disconnected(packet.ProtocolError)

	bad := connect("bad")
	bad.Send(authPacket(packet.ContinueAuthentication, "guess"))
	if a := bad.Read().(*packet.Connack); a.Code != packet.NotAuthorized {
		t.Fatalf("%+v", a)
	}
	bad.Closed()

	rude := connect("rude")
	rude.Send(&packet.Ping{})
	if a := rude.Read().(*packet.Connack); a.Code != packet.ProtocolError {
		t.Fatalf("%+v", a)
	}
}

// TestTakenOverWillCheckedAsItsIdentity: a connection's will is checked as
// the identity that set it, here after a re-authentication to one that may
// publish nothing, not as the connection that took its session over (the
// same user, who may publish there).
func TestTakenOverWillCheckedAsItsIdentity(t *testing.T) {
	s := newServer(t, nil)
	expiry := withExpiry(60)
	c, _ := s.connect(t, packet.V5, "w", func(pk *packet.Connect) {
		expiry(pk)
		pk.Will = &packet.Will{Topic: "t", Payload: []byte("will")}
	})
	reauthenticate(t, c, "narrow")
	s.connect(t, packet.V5, "w", func(pk *packet.Connect) {
		expiry(pk)
		pk.CleanStart = false
	})
	c.Disconnected(packet.SessionTakenOver)
	eventually(t, "the will refused", func() bool { return s.Stats.DeniedPublish.Load() == 1 })
}
