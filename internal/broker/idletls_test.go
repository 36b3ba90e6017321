package broker

import (
	"context"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/store"
)

// waitReaders waits until want connections' readers wait for their socket
// outside crypto/tls.
func waitReaders(t *testing.T, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); mqtttest.ReadersWaitingOutsideTLS() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d readers wait outside crypto/tls, want %d", mqtttest.ReadersWaitingOutsideTLS(), want)
		}
	}
}

// An idle TLS connection's reader waits outside crypto/tls, wakes for the
// next packet, and ends when its thing is disabled (a revocation) or when
// its client stays silent past 1.5 times the keep-alive, as a reader
// waiting in crypto/tls would.
func TestIdleTLSConnectionWaitsOutsideCryptoTLS(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("M")
	device := e.mustConnect5(th.ID, e.thingToken(th))
	waitReaders(t, 1)
	if rc := device.sub(t, "things/"+th.ID+"/commands/#", 1); rc > 1 {
		t.Fatalf("SUBACK %#x", rc)
	}
	waitReaders(t, 1)
	if rc := device.pub(t, "things/"+th.ID+"/telemetry", 1, "21"); rc != 0 {
		t.Fatalf("PUBACK %#x", rc)
	}
	waitReaders(t, 1)

	start := time.Now()
	e.ids.UpdateThing(context.Background(), "test", th.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil })
	if rc := closed(t, device, start); rc != 0x87 {
		t.Errorf("reason %#x", rc)
	}
	waitReaders(t, 0)

	// Keep-alive 1 s and nothing sent after the CONNECT: DISCONNECT 0x8D.
	th2 := e.thing("M")
	c := mqtttest.New(t, e.dial("tls"), packet.V5)
	if ack := c.Connect(&packet.Connect{ClientID: th2.ID, CleanStart: true, KeepAlive: 1, PasswordFlag: true, Password: []byte(e.thingToken(th2))}); ack.Code != 0 {
		t.Fatalf("CONNACK %#x", ack.Code)
	}
	waitReaders(t, 1)
	c.Disconnected(packet.KeepAliveTimeout)
}
