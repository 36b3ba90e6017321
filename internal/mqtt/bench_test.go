package mqtt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqttload"
)

// BenchmarkThroughput is the core without authentication, in the shapes
// issue 16 measures: QoS 0 fan-in (10 publishers, 1 subscriber), QoS 0
// fan-out (1 to 20) and QoS 1 fan-out with loss counted.
//
//	go test -run '^$' -bench Throughput -benchtime 1x ./internal/mqtt/
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name      string
		pubs, sub int
		qos       byte
	}{{"qos0-fan-in", 10, 1, 0}, {"qos0-fan-out", 1, 20, 0}, {"qos1-fan-out", 1, 20, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			s := newServer(b, nil)
			s.auth.open = true
			t := &mqttload.Target{Address: s.addr,
				Client:     func(i int) mqttload.Credential { return mqttload.Credential{ClientID: fmt.Sprint("p", i)} },
				Subscriber: func(j int) mqttload.Credential { return mqttload.Credential{ClientID: fmt.Sprint("s", j)} },
			}
			for range b.N {
				r, err := mqttload.Throughput(context.Background(), t, mqttload.ThroughputOptions{
					Publishers: tc.pubs, Subscribers: tc.sub, QoS: tc.qos, Duration: 3 * time.Second, Payload: 64,
					Window: 100, Topic: "things/%s/telemetry", Filter: "things/+/telemetry"}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.Rate(), "msg/s")
				if tc.qos == 1 {
					b.ReportMetric(float64(r.Lost), "lost")
				}
			}
		})
	}
}

// BenchmarkConnect is CONNECTs per second on TCP without authentication:
// the core's own cost of a connection and its session.
func BenchmarkConnect(b *testing.B) {
	s := newServer(b, nil)
	s.auth.open = true
	t := &mqttload.Target{Address: s.addr, Client: func(i int) mqttload.Credential { return mqttload.Credential{ClientID: fmt.Sprint("c", i)} }}
	b.ResetTimer()
	r := mqttload.Connect(context.Background(), t, b.N, 16, nil)
	if r.Failed > 0 {
		b.Fatal(r.FirstErr)
	}
	b.ReportMetric(r.Rate(), "connect/s")
	r.Close()
}
