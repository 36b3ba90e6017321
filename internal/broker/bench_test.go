package broker

import (
	"context"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqttload"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// BenchmarkConnect measures authenticated CONNECTs on plain TCP (token
// verification, the store reads and the core's session set-up).
func BenchmarkConnect(b *testing.B) {
	e := newEnv(b, nil)
	things := make([]*store.Thing, 200)
	toks := make([]string, len(things))
	for i := range things {
		things[i] = e.thing("M")
		toks[i] = e.thingToken(things[i])
	}
	t := &mqttload.Target{Address: e.b.Addr("tcp"), Client: func(i int) mqttload.Credential {
		return mqttload.Credential{ClientID: things[i%len(things)].ID, Password: toks[i%len(things)]}
	}}
	b.ResetTimer()
	done := 0
	for done < b.N {
		n := min(b.N-done, len(things))
		r := mqttload.Connect(context.Background(), t, n, 16, nil)
		if r.Failed > 0 {
			b.Fatal(r.FirstErr)
		}
		r.Close()
		done += n
	}
}

// BenchmarkConnectNew is BenchmarkConnect with a new token every CONNECT,
// as a thing's first connection: the token verified in full (the memo does
// not know it), then the grant and the thing read.
//
//	go test -run '^$' -bench ConnectNew -benchtime 3000x -cpuprofile /tmp/c.prof ./internal/broker/
func BenchmarkConnectNew(b *testing.B) {
	e := newEnv(b, nil)
	things := make([]*store.Thing, 200)
	for i := range things {
		things[i] = e.thing("M")
	}
	toks := make([]string, b.N)
	for i := range toks {
		toks[i] = e.thingToken(things[i%len(things)])
	}
	b.ResetTimer()
	for done := 0; done < b.N; {
		n, first := min(b.N-done, len(things)), done
		t := &mqttload.Target{Address: e.b.Addr("tcp"), Client: func(i int) mqttload.Credential {
			return mqttload.Credential{ClientID: things[i].ID, Password: toks[first+i]}
		}}
		r := mqttload.Connect(context.Background(), t, n, 16, nil)
		if r.Failed > 0 {
			b.Fatal(r.FirstErr)
		}
		r.Close()
		done += n
	}
}

// BenchmarkPublishQoS0 measures fan-in: things publish telemetry, one
// service subscribed to things/+/telemetry receives it.
func BenchmarkPublishQoS0(b *testing.B) {
	e := newEnv(b, nil)
	things := make([]*store.Thing, 10)
	toks := make([]string, len(things))
	for i := range things {
		things[i] = e.thing("M")
		toks[i] = e.thingToken(things[i])
	}
	svc := e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:sub:things/+/telemetry"}})
	t := &mqttload.Target{Address: e.b.Addr("tcp"),
		Client: func(i int) mqttload.Credential {
			return mqttload.Credential{ClientID: things[i].ID, Password: toks[i]}
		},
		Subscriber: func(j int) mqttload.Credential { return mqttload.Credential{ClientID: "svc", Password: svc} },
	}
	b.ResetTimer()
	r, err := mqttload.Throughput(context.Background(), t, mqttload.ThroughputOptions{
		Publishers: len(things), Subscribers: 1, Duration: 3 * time.Second, Payload: 64,
		Topic: "things/%s/telemetry", Filter: "things/+/telemetry"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.Rate(), "msg/s")
}

// BenchmarkPublishCheck measures the broker's check of one PUBLISH (the
// Auth.Publish the core calls), for a thing acting for itself (topic rules) and
// for a thing acting for a dependant (topic rules and the households'
// verdict, cached for the connection).
func BenchmarkPublishCheck(b *testing.B) {
	f := newFamily(b)
	f.rules(b, policy.Rule{ID: "always", Effect: policy.Allow, Who: policy.Who{Kind: policy.OneMember, Member: f.emma.ID},
		Things: policy.Things{Kind: policy.InRoom, ID: f.room}, Actions: []policy.Action{policy.Publish},
		When: policy.When{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}}})
	f.clk.set(f.schoolDay(12, 0, 0))
	other := f.thing("T-1")
	f.mustConnect5(other.ID, f.thingToken(other))
	f.mustConnect5(f.speaker.ID, f.via(f.emma))
	for _, tc := range []struct {
		name  string
		thing *store.Thing
	}{{"topic rules", other}, {"topic rules and policy", f.speaker}} {
		b.Run(tc.name, func(b *testing.B) {
			cl := f.b.server.Client(tc.thing.ID)
			if cl == nil {
				b.Fatal("not connected")
			}
			topic := "things/" + tc.thing.ID + "/telemetry"
			for b.Loop() {
				if !f.b.auth.Publish(cl, topic) {
					b.Fatal("refused")
				}
			}
		})
	}
}
