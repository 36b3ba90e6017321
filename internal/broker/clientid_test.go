package broker

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// A thing's id is reserved for that thing as client identifier: a user's
// app, a service or an anonymous client naming it with a persistent session
// is refused at CONNECT (0x85), on every listener, and the device then
// connects with its certificate or its token.
func TestAttackThingClientID(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CertificateLogin = true })
	th := e.thing("T-100")
	alice := e.user("alice")
	e.own(alice, th)
	expiry := uint32(604800)
	squat := func(tok string) *paho.Connect {
		cp := &paho.Connect{ClientID: th.ID, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
		if tok != "" {
			cp.Password, cp.PasswordFlag = []byte(tok), true
		}
		return cp
	}
	for _, listener := range []string{"tls", "tcp"} {
		for who, tok := range map[string]string{
			"user":    e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}),
			"service": e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:sub:things/+/commands/#"}}),
		} {
			if code, reason := e.connackCode(listener, squat(tok)); code != 0x85 {
				t.Errorf("%s on %s took the thing's client id: %#x %q", who, listener, code, reason)
			}
		}
	}
	if code, _ := e.connackCode("lab", squat("")); code != 0x85 {
		t.Errorf("anonymous client took the thing's client id: %#x", code)
	}
	// A disabled thing's id stays reserved.
	disabled := e.thing("T-100")
	if _, err := e.st.UpdateThing(context.Background(), disabled.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: disabled.ID, Password: []byte(e.token(tokens.Claims{Subject: "svc", ClientID: "svc"})), PasswordFlag: true}); code != 0x85 {
		t.Errorf("service took a disabled thing's client id: %#x", code)
	}
	// The device is not locked out.
	if _, ca, err := e.connect5(e.dialCert(e.deviceCert(th.ID, false)), squat("")); err != nil || ca.SessionPresent {
		t.Fatalf("device with its certificate: %v %+v", err, ca)
	}
	if code, reason := e.connackCode("tls", squat(e.thingToken(th))); code != 0 {
		t.Fatalf("device with its token: %#x %q", code, reason)
	}
	// Other client ids are as before.
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: "alice-phone", Password: []byte(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"})), PasswordFlag: true}); code != 0 {
		t.Errorf("user with a client id of its own: %#x", code)
	}
}

// The review's repro with mosquitto_sub, MQTT 5 and 3.1.1: refused with
// "identifier rejected"/0x85, and the device connects afterwards.
func TestAttackThingClientIDMosquitto(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	e := newEnv(t, nil)
	th := e.thing("T-100")
	alice := e.user("alice")
	e.own(alice, th)
	cafile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(cafile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.opts.Listeners[0].TLS.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(listener string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		host, port, _ := net.SplitHostPort(e.b.Addr(listener))
		common := []string{"-h", host, "-p", port}
		if listener == "tls" {
			common = append(common, "--cafile", cafile)
		}
		out, err := exec.CommandContext(ctx, sub, append(common, args...)...).CombinedOutput()
		return string(out), err
	}
	appToken := e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"})
	for _, v := range []string{"mqttv5", "mqttv311"} {
		out, err := run("tcp", "-V", v, "-i", th.ID, "-u", "x", "-P", appToken, "-c", "-x", "604800", "-t", "x", "-C", "1", "-W", "5")
		if err == nil || !strings.Contains(strings.ToLower(out), "identifier") {
			t.Errorf("%s: the app took the thing's client id: %v %q", v, err, out)
		}
	}
	if out, err := run("tls", "-V", "mqttv5", "-i", th.ID, "-u", "device", "-P", e.thingToken(th), "-c", "-x", "604800",
		"-t", "things/"+th.ID+"/commands/#", "-C", "1", "-W", "2"); err != nil && strings.Contains(strings.ToLower(out), "identifier") {
		t.Errorf("device locked out: %v %q", err, out)
	}
}

// watch connects an app of user's reading thing's topics.
func (e *env) watch(t *testing.T, user *store.User, thing string) *client5 {
	t.Helper()
	w, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: "watcher", CleanStart: true,
		Password: []byte(e.token(tokens.Claims{Subject: user.ID, ClientID: "app"})), PasswordFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	if rc := w.sub(t, "things/"+thing+"/#", 1); rc != 1 {
		t.Fatalf("watcher subscribe: %#x", rc)
	}
	return w
}

// preFix plays the directory of a broker before thing ids were reserved:
// while hide is set it knows no thing, so checkClientID lets anyone use a
// thing's id and a squatter's session can be made as it was then.
type preFix struct {
	Directory
	hide atomic.Bool
}

func (d *preFix) GetThing(ctx context.Context, id string) (*store.Thing, error) {
	if d.hide.Load() {
		return nil, store.ErrNotFound
	}
	return d.Directory.GetThing(ctx, id)
}

// A session another identity made under a thing's id before the fix, away
// (restored from the session store after the upgrade) or still connected, does not
// lock the thing out: the thing connecting discards it and starts afresh.
func TestThingReclaimsSquattedSession(t *testing.T) {
	for _, away := range []bool{true, false} {
		name := "connected"
		if away {
			name = "restored"
		}
		t.Run(name, func(t *testing.T) {
			dir := &preFix{}
			e := newEnv(t, func(o *Options) { dir.Directory = o.Directory; o.Directory = dir })
			th := e.thing("T-100")
			alice := e.user("alice")
			e.own(alice, th)
			expiry := uint32(604800)
			persistent := func(tok string) *paho.Connect {
				return &paho.Connect{ClientID: th.ID, Password: []byte(tok), PasswordFlag: true,
					Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
			}
			dir.hide.Store(true)
			willTopic := "things/" + th.ID + "/commands/squatter-will"
			squat := persistent(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app", Scope: []string{"mqtt:pub:" + willTopic}}))
			squat.WillMessage = &paho.WillMessage{Topic: willTopic, QoS: 1, Payload: []byte("gone")}
			squatter, _, err := e.connect5(e.dial("tls"), squat)
			if err != nil {
				t.Fatal(err)
			}
			if rc := squatter.sub(t, "things/"+th.ID+"/#", 1); rc != 1 {
				t.Fatalf("squatter subscribe: %#x", rc)
			}
			var watcher *client5
			if !away {
				// An app of the owner's, reading the thing's topics, sees
				// what the squatter may publish there, and whether its will
				// goes out when the thing takes the identifier back.
				watcher = e.watch(t, alice, th.ID)
				squatter.pub(t, willTopic, 1, "alive")
				watcher.expect(t, willTopic)
			}
			dir.hide.Store(false)
			if away {
				squatter.Disconnect(&paho.Disconnect{})
				e.b.Close()
				e.start()
			}

			device, ca, err := e.connect5(e.dial("tls"), persistent(e.thingToken(th)))
			if err != nil {
				t.Fatalf("the thing is locked out: %v %+v", err, ca)
			}
			if ca.SessionPresent {
				t.Error("the thing was handed the squatter's session")
			}
			if !away {
				select {
				case <-squatter.Done():
				case <-time.After(5 * time.Second):
					t.Error("the squatter's connection did not end")
				}
			}
			// Nothing of the squatter's subscription is left to deliver, and
			// its will went with its session: the watcher has the device's
			// telemetry, published after the takeover, and no will before it.
			device.pub(t, "things/"+th.ID+"/telemetry", 1, "private")
			left := e.b.server.Subscriptions()
			if watcher != nil {
				watcher.expect(t, "things/"+th.ID+"/telemetry")
				watcher.mu.Lock()
				wills := 0
				for _, m := range watcher.got {
					if m.Topic == willTopic && string(m.Payload) == "gone" {
						wills++
					}
				}
				watcher.mu.Unlock()
				if wills != 0 {
					t.Error("the squatter's will was published when the thing took its identifier back")
				}
				left-- // the watcher's
			}
			if left != 0 {
				t.Errorf("%d subscriptions left from the squatter", left)
			}
			device.Disconnect(&paho.Disconnect{})

			// And the squatter cannot come back under the thing's id.
			if code, _ := e.connackCode("tls", persistent(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}))); code != 0x85 {
				t.Errorf("squatter came back: %#x", code)
			}
			// The thing's own session is resumed by the thing.
			if _, ca, err := e.connect5(e.dial("tls"), persistent(e.thingToken(th))); err != nil || !ca.SessionPresent {
				t.Errorf("thing resuming its session: %v %+v", err, ca)
			}
		})
	}
}
