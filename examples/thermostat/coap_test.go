package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/examples/internal/platformtest"
	"github.com/thingid/thingid/internal/factory"
)

// In CoAP mode the thermostat's telemetry reaches a cloud service
// subscribed over MQTT, with its pre-shared key and with its certificate;
// a re-issued key ends its session and the thermostat says so.
func TestThermostatCoAP(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{Broker: true, CoAP: true})
	scopes := []string{"mqtt:sub:things/+/telemetry"}
	id, secret := pl.Service(t, "fleet", scopes...)
	readings := make(chan string, 100)
	svc, err := mqttlink.Dial(context.Background(), mqttlink.Config{Broker: pl.BrokerURL, RootCAs: pl.Roots, ClientID: id,
		Token: pl.ServiceToken(t, id, secret, scopes...), Subscribe: []string{"things/+/telemetry"},
		OnMessage: func(topic string, payload []byte) {
			var r room
			if json.Unmarshal(payload, &r) == nil {
				select {
				case readings <- topic:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	start := func(t *testing.T, cfg config) (*platformtest.Output, chan error, context.CancelFunc) {
		cfg.roots, cfg.interval, cfg.setpoint, cfg.temperature, cfg.timeout, cfg.retryFor = pl.Roots, 100*time.Millisecond, 19, 17, 10*time.Second, time.Minute
		cfg.coap.url = pl.CoAPURL
		out := &platformtest.Output{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, cfg, out) }()
		return out, done, cancel
	}
	await := func(t *testing.T, thing string, out *platformtest.Output, done chan error) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case topic := <-readings:
				if topic == "things/"+thing+"/telemetry" {
					return
				}
			case err := <-done:
				t.Fatalf("the thermostat stopped (%v):\n%s", err, out)
			case <-timeout:
				t.Fatalf("no telemetry of %s reached the service:\n%s", thing, out)
			}
		}
	}

	t.Run("pre-shared key", func(t *testing.T) {
		thing, _, _ := pl.Device(t, "Thermo-2", "TH-PSK-1", 0)
		idFile, keyFile := pl.PSK(t, thing)
		out, done, cancel := start(t, config{coap: coapMode{pskIdentity: idFile, pskKey: keyFile}})
		defer cancel()
		await(t, thing, out, done)
		if !strings.Contains(out.String(), "pre-shared key accepted") {
			t.Errorf("output:\n%s", out)
		}
		// A re-issued key ends the session.
		if _, err := factory.IssuePSK(context.Background(), pl.P.Identity, pl.P.Key, "test", thing); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "ended the session") {
				t.Fatalf("stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the thermostat kept running on a re-issued key:\n%s", out)
		}
	})
	t.Run("certificate", func(t *testing.T) {
		thing, certFile, keyFile := pl.Device(t, "Thermo-2", "TH-CERT-1", 0)
		out, done, cancel := start(t, config{certFile: certFile, keyFile: keyFile})
		defer func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("stopped with %v", err)
			}
		}()
		await(t, thing, out, done)
	})
	t.Run("wrong key", func(t *testing.T) {
		thing, _, _ := pl.Device(t, "Thermo-2", "TH-PSK-2", 0)
		idFile, _ := pl.PSK(t, thing)
		_, otherKey := pl.PSK(t, thing) // the identity's key was replaced
		cfg := config{coap: coapMode{url: pl.CoAPURL, pskIdentity: idFile, pskKey: otherKey}, roots: pl.Roots, interval: time.Second, setpoint: 19, timeout: 3 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := run(ctx, cfg, &platformtest.Output{}); err == nil || !strings.Contains(err.Error(), "calling home") {
			t.Fatalf("got %v, want a refusal at call home", err)
		}
	})
}

// Flags that cannot make a CoAP thermostat are refused, naming them.
func TestCoAPFlags(t *testing.T) {
	ok := config{interval: time.Second, timeout: time.Second, retryFor: time.Second, setpoint: 19}
	for want, c := range map[string]coapMode{
		"go together":       {url: "coaps://127.0.0.1:5684", pskIdentity: "psk.identity"},
		"needs --coap":      {pskIdentity: "psk.identity", pskKey: "psk.key"},
		"coaps://host:port": {url: "http://127.0.0.1:5684"},
	} {
		cfg := ok
		cfg.coap = c
		err := cfg.check()
		if err == nil {
			err = run(context.Background(), cfg, &platformtest.Output{})
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", c, err, want)
		}
	}
}
