package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/examples/internal/platformtest"
	"github.com/thingid/thingid/sdk"
)

// thermostat is a device on the broker played by the test: its own token,
// bound to its certificate; the setpoints it receives arrive on the channel.
type thermostat struct {
	id        string
	conn      *mqttlink.Conn
	setpoints chan string
}

func newThermostat(t *testing.T, pl *platformtest.Platform, serial string) *thermostat {
	t.Helper()
	id, certFile, keyFile := pl.Device(t, "Thermo-2", serial, 0)
	dev, err := sdk.New(sdk.Config{Server: pl.URL, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.Roots})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := dev.CallHome(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	th := &thermostat{id: id, setpoints: make(chan string, 100)}
	th.conn, err = mqttlink.Dial(context.Background(), mqttlink.Config{Broker: pl.BrokerURL, RootCAs: pl.Roots, Certificate: &pair,
		ClientID: id, Token: tok.AccessToken, Subscribe: []string{"things/" + id + "/commands/setpoint"},
		OnMessage: func(_ string, payload []byte) { th.setpoints <- string(payload) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { th.conn.Close() })
	return th
}

func (th *thermostat) report(t *testing.T, payload string) {
	t.Helper()
	if err := th.conn.Publish(context.Background(), "things/"+th.id+"/telemetry", []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

func (th *thermostat) await(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-th.setpoints:
		if got != want {
			t.Fatalf("setpoint %q, want %q", got, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no setpoint for %s", th.id)
	}
}

// The service reads every thermostat's telemetry with its service token and
// sends each the setpoint it should hold, once; mosquitto_sub, with the same
// kind of token, sees the same telemetry.
func TestService(t *testing.T) {
	mosquittoSub := platformtest.Tool(t, "mosquitto_sub", "mosquitto-clients")
	pl := platformtest.Start(t, platformtest.Options{Broker: true})
	id, secret := pl.Service(t, "fleet", Scopes...)
	living, office := newThermostat(t, pl, "TH-1"), newThermostat(t, pl, "TH-2")

	out := &platformtest.Output{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{server: pl.URL, roots: pl.Roots, clientID: id, clientSecret: secret, broker: pl.BrokerURL,
			target: 21.5, targets: map[string]float64{office.id: 19}, resend: time.Hour, timeout: 10 * time.Second, retryFor: time.Minute}, out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("stopped with %v", err)
		}
	}()
	for !strings.Contains(out.String(), "subscribed") {
		select {
		case err := <-done:
			t.Fatalf("the service stopped: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}

	// An independent subscriber: Debian's mosquitto_sub with a service token.
	sub := exec.Command(mosquittoSub, "-h", "localhost", "-p", strings.TrimPrefix(pl.BrokerURL, "mqtts://localhost:"), "--cafile", pl.CAFile,
		"-V", "mqttv5", "-i", "observer", "-u", "service", "-P", pl.ServiceToken(t, id, secret, Scopes...),
		"-t", "things/+/telemetry", "-C", "1", "-W", "30", "-v")
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	// Speakers publish telemetry too: not a thermostat's, the service ignores it.
	living.report(t, `{"volume":30,"state":"stopped"}`)
	time.Sleep(200 * time.Millisecond) // mosquitto_sub subscribes meanwhile; it waits for one message
	living.report(t, `{"temperature":18.2,"setpoint":19,"heating":"on"}`)
	living.await(t, "21.5")
	office.report(t, `{"temperature":20.4,"setpoint":21,"heating":"off"}`)
	office.await(t, "19.0")
	if err := sub.Wait(); err != nil || !strings.Contains(subOut.String(), "things/"+living.id+"/telemetry") {
		t.Fatalf("mosquitto_sub: %v\n%s", err, subOut.String())
	}

	// Sent once: until the resend delay, a thermostat is not told again; once
	// it holds the setpoint, nothing is sent.
	living.report(t, `{"temperature":18.4,"setpoint":19,"heating":"on"}`)
	living.report(t, `{"temperature":18.8,"setpoint":21.5,"heating":"on"}`)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "setpoint 21.5, heating on\n"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the service did not see the setpoint applied:\n%s", out)
		}
	}
	select {
	case v := <-living.setpoints:
		t.Fatalf("setpoint %s sent again", v)
	default:
	}
}

// A service that cannot get its token says so and stops.
func TestServiceWrongSecret(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{Broker: true})
	id, _ := pl.Service(t, "fleet", Scopes...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, config{server: pl.URL, roots: pl.Roots, clientID: id, clientSecret: "wrong", broker: pl.BrokerURL,
		target: 21, resend: time.Minute, timeout: 10 * time.Second, retryFor: time.Minute}, &platformtest.Output{})
	if err == nil || !strings.Contains(err.Error(), "getting the service's token") || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("got %v", err)
	}
}

// A setpoint is sent again only after the resend delay, and not at all
// once the thermostat holds it.
func TestDecide(t *testing.T) {
	s := &service{cfg: config{target: 21, resend: time.Minute}, sent: map[string]sent{}}
	now := time.Now()
	cold := reading{Temperature: 18, Setpoint: 19, Heating: "on"}
	for _, step := range []struct {
		r    reading
		at   time.Duration
		send bool
	}{
		{cold, 0, true},
		{cold, 30 * time.Second, false},
		{cold, 61 * time.Second, true},
		{reading{Temperature: 19, Setpoint: 21, Heating: "on"}, 62 * time.Second, false},
		{cold, 63 * time.Second, true}, // changed back locally: told again
	} {
		if v, send := s.decide("th", step.r, now.Add(step.at)); send != step.send || (send && v != 21) {
			t.Errorf("at %s: %v %v, want %v", step.at, v, send, step.send)
		}
	}
}

func TestParseTelemetry(t *testing.T) {
	for in, want := range map[string]bool{
		`{"temperature":18.2,"setpoint":19,"heating":"on"}`:  true,
		`{"temperature":-5,"setpoint":0,"heating":"off"}`:    true,
		`{"volume":30,"state":"stopped"}`:                    false,
		`{"temperature":18.2,"heating":"on"}`:                false,
		`{"temperature":1e9,"setpoint":19,"heating":"on"}`:   false,
		`{"temperature":18,"setpoint":19,"heating":"maybe"}`: false,
		`{"temperature":"18","setpoint":19,"heating":"on"}`:  false,
		`[]`: false, ``: false,
	} {
		if _, ok := parseTelemetry([]byte(in)); ok != want {
			t.Errorf("%s: %v, want %v", in, ok, want)
		}
	}
}

func FuzzParseTelemetry(f *testing.F) {
	f.Add([]byte(`{"temperature":18.2,"setpoint":19,"heating":"on"}`))
	f.Add([]byte(`{"temperature":null,"setpoint":19}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, ok := parseTelemetry(b); ok && (!(r.Setpoint >= 0 && r.Setpoint <= 50) || !(r.Temperature >= -50 && r.Temperature <= 80)) {
			t.Errorf("%q accepted as %+v", b, r)
		}
	})
}

func TestThingOf(t *testing.T) {
	for topic, want := range map[string]string{
		"things/abc/telemetry": "abc", "things//telemetry": "", "things/a/b/telemetry": "",
		"things/abc/commands": "", "others/abc/telemetry": "", "things/+/telemetry": "",
	} {
		if got, ok := thingOf(topic); ok != (want != "") || (ok && got != want) {
			t.Errorf("%s: %q %v, want %q", topic, got, ok, want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	if thing, v, err := parseTarget("01a2=21.5"); thing != "01a2" || v != 21.5 || err != nil {
		t.Errorf("01a2=21.5: %q %v %v", thing, v, err)
	}
	for _, in := range []string{"", "=21", "abc", "abc=", "abc=hot", "abc=99", "a/b=21", "abc=NaN"} {
		if _, _, err := parseTarget(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"01a2=21.5", "x=NaN", "=", "a=1e999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if thing, v, err := parseTarget(s); err == nil && (thing == "" || !(v >= minSetpoint && v <= maxSetpoint)) {
			t.Errorf("%q accepted as %q %v", s, thing, v)
		}
	})
}
