package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
	"github.com/thingid/thingid/internal/store/postgres/pgtest"
)

// Two nodes of one database, their brokers joined by mqtt.cluster.nats
// to a real nats-server: a thing's telemetry published on node a reaches
// a service subscribed on node b, and the thing connecting on node b ends
// its connection on node a.
func TestBrokersAcrossNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	url := natstest.Start(t)
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	ctx := t.Context()
	start := func(name string) (*Platform, string) {
		cfg := config.Default()
		cfg.Home = t.TempDir()
		cfg.MasterKey = key
		cfg.Storage.Type, cfg.Storage.Postgres.DSN = "postgres", dsn
		cfg.MQTT.TLS.Address = "127.0.0.1:0"
		cfg.MQTT.Cluster.Node = name
		cfg.MQTT.Cluster.NATS.URL = url
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		p, err := Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		addr, _ := serveBroker(t, ctx, p)
		return p, addr
	}
	pa, addrA := start("a")
	pb, addrB := start("b")
	things, service, err := pa.BenchTokens(ctx, 1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	connect := func(p *Platform, addr string, who BenchToken) (*paho.Client, chan *paho.Publish, chan *paho.Disconnect) {
		t.Helper()
		nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: platformCA(t, p), ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		received, gone := make(chan *paho.Publish, 10), make(chan *paho.Disconnect, 1)
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(nc),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				received <- pr.Packet
				return true, nil
			}},
			OnServerDisconnect: func(d *paho.Disconnect) { gone <- d },
			OnClientError:      func(error) {},
		})
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.Connect(cctx, &paho.Connect{ClientID: who.ClientID, KeepAlive: 30, CleanStart: true, Password: []byte(who.Token), PasswordFlag: true}); err != nil {
			t.Fatalf("connect %s: %v", who.ClientID, err)
		}
		t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
		return c, received, gone
	}
	svc, got, _ := connect(pb, addrB, service)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := svc.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/+/telemetry", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	thing, _, gone := connect(pa, addrA, things[0])
	topic := "things/" + things[0].ClientID + "/telemetry"
	if _, err := thing.Publish(cctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.Topic != topic || string(p.Payload) != "21.5" || p.QoS != 1 {
			t.Fatalf("received %s %q QoS %d", p.Topic, p.Payload, p.QoS)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the service on node b did not receive the thing's telemetry from node a")
	}

	connect(pb, addrB, things[0])
	select {
	case d := <-gone:
		if d.ReasonCode != 0x8E {
			t.Fatalf("DISCONNECT 0x%02x, want 0x8E (session taken over)", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the thing's connection on node a was not taken over")
	}
}
