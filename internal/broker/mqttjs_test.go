package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/npmtest"
	"github.com/thingid/thingid/internal/tokens"
)

// MQTTjsVersion is the MQTT.js release TestMQTTjs runs, pinned so that a new
// release does not change the test's verdict unasked.
const MQTTjsVersion = "5.16.0"

// MQTT.js, the JavaScript client of browsers and Node.js, speaks MQTT 5 to
// the broker over TCP, TLS and WebSocket with a token as the password: a
// subscription inside its rules is granted and one outside refused (0x87),
// a QoS 1 publish with a user property is acknowledged by a PUBACK MQTT.js
// accepts, the message arrives, and a forged token is refused at CONNECT.
func TestMQTTjs(t *testing.T) {
	node := npmtest.Node(t, "the MQTT.js client test")
	modules := npmtest.Install(t, "mqtt", MQTTjsVersion, "the MQTT.js client test")
	e := newEnv(t, nil)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.opts.Listeners[0].TLS.Certificates[0].Certificate[0]})
	script, err := filepath.Abs(filepath.Join("testdata", "mqttjs.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []struct{ name, url string }{
		{"tcp", "mqtt://" + e.b.Addr("tcp")},
		{"tls", "mqtts://" + e.b.Addr("tls")},
		{"websocket", "wss://" + e.b.Addr("websocket") + WebSocketPath},
	} {
		t.Run(tr.name, func(t *testing.T) {
			th, other := e.thing("T-100"), e.thing("T-100")
			in, _ := json.Marshal(map[string]string{
				"url": tr.url, "ca": string(ca), "origin": "https://app.example.com",
				"thing": th.ID, "other": other.ID, "device": e.thingToken(th), "forged": e.thingToken(th) + "x",
				"service": e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:sub:things/+/telemetry"}}),
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, script)
			cmd.Env = append(os.Environ(), "MQTTJS_MODULES="+modules, "MQTTJS_CASE="+string(in))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			steps := map[string]map[string]any{}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				var s map[string]any
				if json.Unmarshal(sc.Bytes(), &s) == nil {
					steps[s["step"].(string)] = s
				}
			}
			if err != nil {
				t.Fatalf("MQTT.js: %v\n%s%s", err, out, stderr.String())
			}
			want := []struct {
				step, field string
				value       any
			}{
				{"subscribe", "reason", 1.0},   // granted QoS 1
				{"puback", "reason", 0.0},      // success, not 0x10 nor an echo
				{"puback", "properties", nil},  // the publisher's user property is not echoed
				{"message", "payload", "21.5"}, // delivered to the subscriber
				{"message", "t", "things/" + th.ID + "/telemetry"},
				{"subscribe-other", "reason", 135.0}, // 0x87 not authorized
				{"forged", "reason", 134.0},          // 0x86 bad user name or password
			}
			for _, w := range want {
				s, ok := steps[w.step]
				if !ok {
					t.Errorf("step %s missing from MQTT.js's output:\n%s%s", w.step, out, stderr.String())
					continue
				}
				if got := s[w.field]; got != w.value {
					t.Errorf("%s: %s = %v, want %v", w.step, w.field, got, w.value)
				}
			}
		})
	}
}
