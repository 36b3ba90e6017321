package broker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/store"
)

// waitReaders waits until want idle connections wait for their socket
// outside crypto/tls: parked (mqtt.Stats.Parked).
func (e *env) waitReaders(t *testing.T, want int64) {
	t.Helper()
	parked := &e.b.server.Stats.Parked
	for deadline := time.Now().Add(10 * time.Second); parked.Load() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections parked outside crypto/tls, want %d", parked.Load(), want)
		}
	}
}

// An idle TLS connection's reader waits outside crypto/tls, wakes for the
// next packet, and ends when its thing is disabled (a revocation) or when
// its client stays silent past 1.5 times the keep-alive, as a reader
// waiting in crypto/tls would.
func TestIdleTLSConnectionWaitsOutsideCryptoTLS(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) { o.Metrics = reg })
	th := e.thing("M")
	device := e.mustConnect5(th.ID, e.thingToken(th))
	for deadline := time.Now().Add(10 * time.Second); gauge(t, reg, "thingid_mqtt_connections_parked") != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("thingid_mqtt_connections_parked %v, want 1", gauge(t, reg, "thingid_mqtt_connections_parked"))
		}
	}
	if rc := device.sub(t, "things/"+th.ID+"/commands/#", 1); rc > 1 {
		t.Fatalf("SUBACK %#x", rc)
	}
	e.waitReaders(t, 1)
	if rc := device.pub(t, "things/"+th.ID+"/telemetry", 1, "21"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	e.waitReaders(t, 1)

	start := time.Now()
	e.ids.UpdateThing(context.Background(), "test", th.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil })
	if rc := closed(t, device, start); rc != 0x87 {
		t.Errorf("reason %#x", rc)
	}
	e.waitReaders(t, 0)

	// Keep-alive 1 s and nothing sent after the CONNECT: DISCONNECT 0x8D.
	th2 := e.thing("M")
	c := mqtttest.New(t, e.dial("tls"), packet.V5)
	if ack := c.Connect(&packet.Connect{ClientID: th2.ID, CleanStart: true, KeepAlive: 1, PasswordFlag: true, Password: []byte(e.thingToken(th2))}); ack.Code != 0 {
		t.Fatalf("CONNACK %#x", ack.Code)
	}
	e.waitReaders(t, 1)
	c.Disconnected(packet.KeepAliveTimeout)
}
