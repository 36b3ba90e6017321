package mqttnats

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/mqttnats/natstest"
)

// BenchmarkRouting publishes QoS 1 messages with paho on node a, to a
// subscriber on node a (single: the core alone, the Remote only
// forwarding) and on node b (cross: through nats-server), and reports
// the messages per second delivered. Publishes overlap, 64 at a time.
// The persistent cases do the same between nodes that keep sessions in
// the cluster, to a subscriber with a persistent session: each message
// stored in JetStream before its PUBACK, and deleted once delivered.
func BenchmarkRouting(b *testing.B) {
	url := natstest.Start(b)
	na, nb := startNode(b, url, "a"), startNode(b, url, "b")
	sa, sb := startSessionNode(b, url, "sa", 0), startSessionNode(b, url, "sb", 0)
	for _, bc := range []struct {
		name     string
		from, to *node
	}{{"single", na, na}, {"persistent-single", sa, sa}, {"cross", na, nb}, {"persistent-cross", sa, sb}} {
		b.Run(bc.name, func(b *testing.B) {
			sub := dial(b, bc.to, "sub-"+bc.name, "user")
			if bc.to.router.sessions != nil {
				sub = persistent(b, bc.to, "sub-"+bc.name, true)
			}
			sub.subscribe(b, "bench/"+bc.name, 1)
			pub := dial(b, bc.from, "pub-"+bc.name, "user")
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

// BenchmarkConnect connects and disconnects paho clients, each with a
// client identifier of its own, 8 at a time, to a single server (single)
// and to a node of a cluster (cluster: each CONNECT waits for its claim
// from JetStream), and reports the CONNECTs per second. persistent: to a
// node keeping sessions in the cluster, clients that do not start clean
// and keep their session for an hour (read from the bucket, written at
// CONNECT and again when the client leaves, its queue read).
func BenchmarkConnect(b *testing.B) {
	url := natstest.Start(b)
	for _, bc := range []struct {
		name string
		to   *node
	}{{"single", startNodeWith(b, "", "single", nil)}, {"cluster", startNode(b, url, "a")}, {"persistent", startSessionNode(b, url, "p", 0)}} {
		b.Run(bc.name, func(b *testing.B) {
			var seq atomic.Int64
			b.SetParallelism(8 / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := bc.name + strconv.FormatInt(seq.Add(1), 10)
					var c *client
					if bc.to.router != nil && bc.to.router.sessions != nil {
						c = persistent(b, bc.to, id, false)
					} else {
						c = dial(b, bc.to, id, "user")
					}
					c.Disconnect(&paho.Disconnect{})
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connect/s")
		})
	}
}
