package mqttnats

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/mqtt"
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
			b.ResetTimer()
			start := time.Now()
			drain := publishAll(ctx, b, pub, 64, paho.Publish{Topic: "bench/" + bc.name, QoS: 1, Payload: payload})
			<-done
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
			drain()
		})
	}
}

// BenchmarkConnect connects and disconnects paho clients, each with a
// client identifier of its own, 8 at a time, to a single server (single)
// and to a node of a cluster (cluster: each CONNECT waits for its claim
// from JetStream), and reports the CONNECTs per second. persistent: to a
// node keeping sessions in the cluster, clients that do not start clean
// and keep their session for an hour (read from the bucket, written at
// CONNECT and again when the client leaves, its queue read); clean: to a
// node keeping sessions in the cluster, clients starting clean without a
// session (the bucket read once the claim is had, for a session to end).
func BenchmarkConnect(b *testing.B) {
	url := natstest.Start(b)
	sessions := startSessionNode(b, url, "p", 0)
	for _, bc := range []struct {
		name string
		to   *node
	}{{"single", startNodeWith(b, "", "single", nil)}, {"cluster", startNode(b, url, "a")}, {"persistent", sessions}, {"clean", sessions}} {
		b.Run(bc.name, func(b *testing.B) {
			var seq atomic.Int64
			b.SetParallelism(8 / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := bc.name + strconv.FormatInt(seq.Add(1), 10)
					var c *client
					if bc.name == "persistent" {
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

// BenchmarkNATSTraffic publishes on the first node of a cluster and
// reports what nats-server carried per published message (its /varz):
// messages and bytes to the nodes (out), from them (in). Patterns:
// telemetry, each message to tele/<device>/up and one subscriber of
// tele/# on the second node (the cloud service); commands, each message
// to cmd/<device>, each device subscribed to its own on one of the nodes
// (100 per node). Modes: interest, this router; everywhere, instead of
// those subscribers a tap on '#' on each node, whose one subject
// (thingid.mqtt.>) is what every node subscribed to before the router
// subscribed by interest: the traffic of that design.
func BenchmarkNATSTraffic(b *testing.B) {
	for _, nodes := range []int{3, 6} {
		for _, pattern := range []string{"telemetry", "commands"} {
			for _, mode := range []string{"interest", "everywhere"} {
				b.Run(fmt.Sprintf("nodes=%d/%s/%s", nodes, pattern, mode), func(b *testing.B) {
					srv := natstest.Run(b)
					ns := make([]*node, nodes)
					for i := range ns {
						ns[i] = startNode(b, srv.URL, "n"+strconv.Itoa(i))
					}
					var got atomic.Int64
					count := func(*mqtt.Message) { got.Add(1) }
					topicOf := func(i int) string { return "tele/" + strconv.Itoa(i%1000) + "/up" }
					if pattern == "commands" {
						topicOf = func(i int) string { return "cmd/" + strconv.Itoa(i%(100*nodes)) }
					}
					switch {
					case mode == "everywhere":
						for i, n := range ns {
							f := func(*mqtt.Message) {}
							if i == 1 {
								f = count
							}
							defer n.srv.Tap("#", f)()
						}
					case pattern == "telemetry":
						defer ns[1].srv.Tap("tele/#", count)()
					default:
						for d := range 100 * nodes {
							defer ns[d%nodes].srv.Tap("cmd/"+strconv.Itoa(d), count)()
						}
					}
					payload := make([]byte, 64)
					before := srv.Varz(b)
					b.ResetTimer()
					for i := range b.N {
						ns[0].srv.Publish(&mqtt.Message{Topic: topicOf(i), Payload: payload, QoS: 1, From: "device"})
					}
					eventually(b, "every message delivered", func() bool { return got.Load() == int64(b.N) })
					b.StopTimer()
					after := srv.Varz(b)
					b.ReportMetric(float64(after.OutMsgs-before.OutMsgs)/float64(b.N), "out-msgs/op")
					b.ReportMetric(float64(after.OutBytes-before.OutBytes)/float64(b.N), "out-bytes/op")
					b.ReportMetric(float64(after.InBytes-before.InBytes)/float64(b.N), "in-bytes/op")
				})
			}
		}
	}
}

// BenchmarkInterestSubscriptions subscribes b.N filters as the default
// rules give things, things/<id>/commands/# (two subjects each), on one
// node, as taps, and reports what the NATS server holds for them: its
// subscriptions and its resident memory (/varz) per filter.
func BenchmarkInterestSubscriptions(b *testing.B) {
	srv := natstest.Run(b)
	n := startNode(b, srv.URL, "a")
	var before, after struct {
		Mem  int64 `json:"mem"`
		Subs int64 `json:"subscriptions"`
	}
	srv.Get(b, "/varz", &before)
	b.ResetTimer()
	for i := range b.N {
		defer n.srv.Tap("things/"+strconv.Itoa(i)+"/commands/#", func(*mqtt.Message) {})()
	}
	b.StopTimer()
	srv.Get(b, "/varz", &after)
	b.ReportMetric(float64(after.Subs-before.Subs)/float64(b.N), "nats-subs/op")
	b.ReportMetric(float64(after.Mem-before.Mem)/float64(b.N), "nats-rss-bytes/op")
}

// BenchmarkQoS2 publishes QoS 2 messages with paho from a client with a
// persistent session on node a, 16 at a time, to two subscribers on node
// b, one with a persistent session, between nodes keeping sessions in
// the cluster: each message's packet identifier written to the
// publisher's record before its PUBREC and removed after its PUBCOMP, a
// copy stored for the persistent subscriber. It reports the messages per
// second and the CPU time of this process (both nodes and the clients;
// not nats-server's) per message.
func BenchmarkQoS2(b *testing.B) {
	url := natstest.Start(b)
	na, nb := startSessionNode(b, url, "a", 0), startSessionNode(b, url, "b", 0)
	live, kept := dial(b, nb, "live", "user"), persistent(b, nb, "kept", true)
	live.subscribe(b, "bench/qos2", 2)
	kept.subscribe(b, "bench/qos2", 2)
	pub := persistent(b, na, "pub", true)
	payload := make([]byte, 64)
	done := make(chan struct{})
	go func() {
		for range b.N {
			<-live.received
			<-kept.received
		}
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	start := time.Now()
	drain := publishAll(ctx, b, pub, 16, paho.Publish{Topic: "bench/qos2", QoS: 2, Payload: payload})
	<-done
	elapsed := time.Since(start)
	drain()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// publishAll publishes b.N copies of p from goroutines, at most window at
// a time; drain waits for the last acknowledgements.
func publishAll(ctx context.Context, b *testing.B, pub *client, window int, p paho.Publish) (drain func()) {
	slots := make(chan struct{}, window)
	for range b.N {
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			m := p
			if _, err := pub.Publish(ctx, &m); err != nil {
				b.Error(err)
			}
		}()
	}
	return func() {
		for range window {
			slots <- struct{}{}
		}
	}
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
