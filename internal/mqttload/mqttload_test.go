package mqttload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The generator against a plain mochi broker that lets everyone in: held
// connections, QoS 0 and QoS 1 runs with every message counted.
func TestAgainstABroker(t *testing.T) {
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.AddHook(new(allowAll), nil)
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := s.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cred := func(prefix string) func(int) Credential {
		return func(i int) Credential { return Credential{ClientID: fmt.Sprintf("%s-%d", prefix, i)} }
	}
	target := &Target{Address: ln.Address(), Client: cred("c"), Subscriber: cred("s")}
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
	}
	if _, err := RSS(1); err != nil {
		t.Errorf("RSS of pid 1: %v", err)
	}
}

// allowAll lets every client in and everywhere (mochi's own allow hook
// would bring in a YAML module).
type allowAll struct{ mqtt.HookBase }

func (allowAll) ID() string { return "allow-all" }
func (allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }
