package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thingid/thingid/examples/thermostat/coaplink"
	"github.com/thingid/thingid/internal/factory"
)

// thermostatModel is the constrained device of the story: it speaks CoAP
// over DTLS with the pre-shared key of its factory batch.
const thermostatModel = "Thermo-2"

// coapThermostat issues a thermostat with a pre-shared key, as `thingid
// factory issue --psk` does, and has it call home over CoAP and post a
// reading to the CoAP gateway (examples/thermostat's CoAP side); the cloud
// service, subscribed over MQTT, receives it.
func (s *story) coapThermostat(ctx context.Context) (string, error) {
	_, ca, err := s.platform.PKI()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(s.platform.Config.Home, "factory-coap")
	sum, err := factory.Issue(ctx, s.platform.Identity, ca, factory.Options{Model: thermostatModel, Manufacturer: manufacturer,
		Count: 1, Out: dir, Actor: actor, PSK: true, MasterKey: s.platform.Key})
	if err == nil && len(sum.Failed) > 0 {
		err = sum.Failed[0]
	}
	if err != nil {
		return "", fmt.Errorf("issuing a thermostat with a pre-shared key: %w", err)
	}
	ds, err := readBatch(dir)
	if err != nil {
		return "", err
	}
	d := filepath.Join(dir, ds[0].Serial)
	idFile := filepath.Join(d, factory.PSKIdentityFile)
	l, err := coaplink.Dial(ctx, coaplink.Config{URL: s.ep.CoAPURL, PSKIdentityFile: idFile,
		PSKKeyFile: filepath.Join(d, factory.PSKKeyFile), Timeout: stepTimeout})
	if err != nil {
		return "", fmt.Errorf("the thermostat %s: %w", ds[0].Serial, err)
	}
	defer l.Close()
	reading := []byte(`{"temperature":19.4,"setpoint":21,"heating":"on"}`)
	if err := l.Telemetry(ctx, reading); err != nil {
		return "", fmt.Errorf("the thermostat's telemetry: %w", err)
	}
	topic := "things/" + l.ThingID + "/telemetry"
	m, _, err := await(ctx, s.service.msgs, "the cloud service's MQTT connection", 0, stepTimeout, "the thermostat's telemetry on "+topic,
		func(m message) bool { return m.Topic == topic })
	if err != nil {
		return "", err
	}
	identity, _ := os.ReadFile(idFile)
	return fmt.Sprintf("thermostat %s (factory issue --psk: PSK identity %s) called home over CoAP on %s with its pre-shared key and posted to /mqtt/%s; the cloud service received %s %s over MQTT",
		ds[0].Serial, strings.TrimSpace(string(identity)), s.ep.CoAPURL, topic, m.Topic, m.Payload), nil
}
