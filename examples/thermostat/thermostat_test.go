package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/examples/internal/platformtest"
)

// The thermostat publishes the room and applies the setpoints a service
// sends; a setpoint it cannot hold is ignored.
func TestThermostat(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{Broker: true})
	thing, certFile, keyFile := pl.Device(t, "Thermo-2", "TH-0001", 0)
	scopes := []string{"mqtt:sub:things/+/telemetry", "mqtt:pub:things/+/commands/#"}
	id, secret := pl.Service(t, "fleet", scopes...)
	readings := make(chan room, 100)
	svc, err := mqttlink.Dial(context.Background(), mqttlink.Config{Broker: pl.BrokerURL, RootCAs: pl.Roots, ClientID: id,
		Token: pl.ServiceToken(t, id, secret, scopes...), Subscribe: []string{"things/+/telemetry"},
		OnMessage: func(topic string, payload []byte) {
			var r room
			if topic == "things/"+thing+"/telemetry" && json.Unmarshal(payload, &r) == nil {
				select {
				case readings <- r:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	out := &platformtest.Output{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{server: pl.URL, roots: pl.Roots, certFile: certFile, keyFile: keyFile, broker: pl.BrokerURL,
			interval: 100 * time.Millisecond, setpoint: 19, temperature: 17, timeout: 10 * time.Second, retryFor: time.Minute}, out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("stopped with %v", err)
		}
	}()

	await := func(what string, ok func(room) bool) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case r := <-readings:
				if ok(r) {
					return
				}
			case err := <-done:
				t.Fatalf("the thermostat stopped (%v) before %s:\n%s", err, what, out)
			case <-timeout:
				t.Fatalf("timed out waiting for %s:\n%s", what, out)
			}
		}
	}
	await("heating towards 19 °C", func(r room) bool { return r.Setpoint == 19 && r.Heating == "on" })
	publish := func(v string) {
		t.Helper()
		if err := svc.Publish(context.Background(), "things/"+thing+"/commands/setpoint", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	publish("23.5")
	await("the new setpoint", func(r room) bool { return r.Setpoint == 23.5 })
	publish("99")
	publish("NaN")
	await("the refusals", func(room) bool { return strings.Count(out.String(), "ignored a command") == 2 })
	await("the setpoint kept", func(r room) bool { return r.Setpoint == 23.5 })
	// The room warms up to the setpoint and the heating turns off.
	await("the heating off", func(r room) bool { return r.Heating == "off" && r.Temperature > 23.5 })
}

// What the thermostat cannot get past fails at once, naming it.
func TestThermostatStartupFailures(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{})
	_, certFile, keyFile := pl.Device(t, "Thermo-2", "TH-0002", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	base := config{server: pl.URL, roots: pl.Roots, certFile: certFile, keyFile: keyFile, broker: "mqtts://" + free,
		interval: time.Second, setpoint: 19, timeout: 5 * time.Second, retryFor: time.Minute}
	for _, tc := range []struct {
		name  string
		tweak func(*config)
		want  string
	}{
		{"missing certificate", func(c *config) { c.certFile += ".missing" }, "--cert"},
		{"platform unreachable", func(c *config) { c.server = "https://" + free }, "calling home"},
		{"broker unreachable", func(*config) {}, "connecting to the MQTT broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.tweak(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := run(ctx, cfg, &platformtest.Output{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestParseSetpoint(t *testing.T) {
	for in, want := range map[string]float64{"21.5": 21.5, " 19 \n": 19, "5": 5, "35": 35, "21.54": 21.5} {
		if got, err := parseSetpoint([]byte(in)); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "4.9", "35.1", "NaN", "Inf", "-0x1p3", "21,5", "hot", "1e400"} {
		if got, err := parseSetpoint([]byte(in)); err == nil {
			t.Errorf("%q accepted as %v", in, got)
		}
	}
}

func FuzzParseSetpoint(f *testing.F) {
	for _, s := range []string{"21.5", "NaN", "1e309", "0x15", "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseSetpoint(b); err == nil && !(v >= minSetpoint && v <= maxSetpoint) {
			t.Errorf("%q accepted as %v", b, v)
		}
	})
}

func TestRoom(t *testing.T) {
	r := room{Temperature: 18, Setpoint: 19, Heating: "off"}
	r.step() // 17.8, below 18.5: on
	if r.Heating != "on" || r.Temperature != 17.8 {
		t.Fatalf("%+v", r)
	}
	for range 5 {
		r.step()
	}
	if r.Heating != "off" || r.Temperature != 19.8 { // 17.8 + 5×0.4, above 19.5: off
		t.Fatalf("%+v", r)
	}
}
