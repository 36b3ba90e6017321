package mqttnats

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// BenchmarkRouting publishes QoS 1 messages with paho on node a, to a
// subscriber on node a (single: the core alone, the Remote only
// forwarding) and on node b (cross: through nats-server), and reports
// the messages per second delivered. Publishes overlap, 64 at a time.
func BenchmarkRouting(b *testing.B) {
	url := natstest.Start(b)
	na, nb := startNode(b, url, "a"), startNode(b, url, "b")
	for _, bc := range []struct {
		name string
		to   *node
	}{{"single", na}, {"cross", nb}} {
		b.Run(bc.name, func(b *testing.B) {
			sub := dial(b, bc.to, "sub-"+bc.name, "user")
			sub.subscribe(b, "bench/"+bc.name, 1)
			pub := dial(b, na, "pub-"+bc.name, "user")
			payload := make([]byte, 64)
			done := make(chan struct{})
			go func() {
				for range b.N {
					<-sub.received
				}
				close(done)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			window := make(chan struct{}, 64)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				window <- struct{}{}
				go func() {
					defer func() { <-window }()
					if _, err := pub.Publish(ctx, &paho.Publish{Topic: "bench/" + bc.name, QoS: 1, Payload: payload}); err != nil {
						b.Error(err)
					}
				}()
			}
			<-done
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
			for range cap(window) { // the last acknowledgements
				window <- struct{}{}
			}
		})
	}
}
