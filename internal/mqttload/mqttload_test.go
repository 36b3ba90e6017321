package mqttload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// The generator against thingid's MQTT core letting everyone in: held
// connections, QoS 0 and QoS 1 runs with every message counted.
func TestAgainstABroker(t *testing.T) {
	s, err := mqtt.New(mqtt.Config{Auth: allowAll{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.ServeConn(nc)
		}
	}()
	defer s.Close()
	defer ln.Close()
	cred := func(prefix string) func(int) Credential {
		return func(i int) Credential { return Credential{ClientID: fmt.Sprintf("%s-%d", prefix, i)} }
	}
	target := &Target{Address: ln.Addr().String(), Client: cred("c"), Subscriber: cred("s")}
	r := Connect(context.Background(), target, 50, 8, nil)
	if r.Opened != 50 || r.Failed != 0 || r.Rate() <= 0 {
		t.Fatalf("connect: %+v", r)
	}
	r.Close()
	for _, qos := range []byte{0, 1} {
		res, err := Throughput(context.Background(), target, ThroughputOptions{Publishers: 2, Subscribers: 2, QoS: qos,
			Duration: 300 * time.Millisecond, Window: 8, Topic: "t/%s", Filter: "t/#"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published == 0 || res.Received == 0 {
			t.Errorf("QoS %d: nothing went through: %+v", qos, res)
		}
		if qos == 1 && (res.Lost != 0 || res.Expected != 2*res.Acked) {
			t.Errorf("QoS 1: %+v", res)
		}
		if res.Latency.n != res.Received || res.Latency.Quantile(0.5) <= 0 {
			t.Errorf("QoS %d: %d latencies of %d received, median %v", qos, res.Latency.n, res.Received, res.Latency.Quantile(0.5))
		}
	}
	// Subscribers on another address (here the same broker), publishers
	// paced: never more than the rate allows.
	target.SubscriberAddress = ln.Addr().String()
	res, err := Throughput(context.Background(), target, ThroughputOptions{Publishers: 2, Subscribers: 1, Rate: 50,
		Duration: 200 * time.Millisecond, Topic: "t/%s", Filter: "t/#"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if allowed := int64(2 * (50*res.Elapsed.Seconds() + 1)); res.Published == 0 || res.Published > allowed {
		t.Errorf("paced at 50/s for %v: published %d, at most %d allowed", res.Elapsed, res.Published, allowed)
	}
	if _, err := RSS(1); err != nil {
		t.Errorf("RSS of pid 1: %v", err)
	}
}

// allowAll lets every client in and everywhere.
type allowAll struct{}

func (allowAll) Connect(context.Context, *mqtt.Client, *packet.Connect, any) error { return nil }
func (allowAll) Reauthenticate(context.Context, *mqtt.Client, *packet.Auth) error  { return nil }
func (allowAll) Continue(context.Context, *mqtt.Client, *packet.Auth) error        { return nil }
func (allowAll) Publish(*mqtt.Client, string) bool                                 { return true }
func (allowAll) Subscribe(*mqtt.Client, string) bool                               { return true }
func (allowAll) Deliver(*mqtt.Client, string) bool                                 { return true }
