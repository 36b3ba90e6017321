package broker

import (
	"testing"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/tokens"
)

// TestConformance runs the core's conformance suite (issue 16) against the
// broker, with its authentication and topic rules: a service whose token
// may publish and subscribe to conformance/t, over the TCP listener.
func TestConformance(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxPacketSize = 4096 })
	token := func(scopes ...string) string {
		return e.token(tokens.Claims{Subject: "conformance", ClientID: "conformance", Scope: scopes})
	}
	full := token("mqtt:pub:conformance/t", "mqtt:sub:conformance/t")
	narrow := token("mqtt:sub:conformance/t")
	mqtttest.Run(t, mqtttest.Target{Addr: e.b.Addr("tcp"), Allowed: "conformance/t", Denied: "secret/t", MaxPacketSize: 4096,
		Credentials: func(pk *packet.Connect) {
			// MQTT 3.1.1: the token as password, which needs a user name (§3.1.2.9).
			pk.UsernameFlag, pk.Username, pk.PasswordFlag, pk.Password = true, "conformance", true, []byte(full)
			pk.Props.AuthMethod, pk.Props.AuthData = AuthMethod, []byte(full)
			pk.Props.Set(packet.PropAuthMethod)
			pk.Props.Set(packet.PropAuthData)
		},
		Narrowed: func(a *packet.Auth) {
			a.Props.AuthMethod, a.Props.AuthData = AuthMethod, []byte(narrow)
			a.Props.Set(packet.PropAuthMethod)
			a.Props.Set(packet.PropAuthData)
		},
	})
}
