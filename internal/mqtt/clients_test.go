package mqtt

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// TestPahoV5 runs Eclipse paho.golang, a strict MQTT 5 client, through
// QoS 1 and 2 with user properties and a request/response pair of
// properties, which the server passes through untouched.
func TestPahoV5(t *testing.T) {
	s := newServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	received := make(chan *paho.Publish, 10)
	dial := func(id string) *paho.Client {
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{
			Conn: packets.NewThreadSafeConn(nc),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				received <- pr.Packet
				return true, nil
			}},
			OnClientError: func(error) {},
		})
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("ok")}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
		return c
	}
	sub, pub := dial("sub"), dial("pub")
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "req/#", QoS: 2}}}); err != nil {
		t.Fatal(err)
	}
	for _, qos := range []byte{1, 2} {
		r, err := pub.Publish(ctx, &paho.Publish{Topic: "req/x", QoS: qos, Payload: []byte("ping"), Properties: &paho.PublishProperties{
			ResponseTopic: "resp/x", CorrelationData: []byte{1, 2}, ContentType: "text/plain",
			User: paho.UserProperties{{Key: "trace", Value: "t1"}},
		}})
		if err != nil || r.ReasonCode != 0 {
			t.Fatalf("QoS %d publish: %+v, %v", qos, r, err)
		}
		select {
		case p := <-received:
			if p.QoS != qos || p.Properties.ResponseTopic != "resp/x" || string(p.Properties.CorrelationData) != "\x01\x02" ||
				p.Properties.ContentType != "text/plain" || p.Properties.User.Get("trace") != "t1" {
				t.Fatalf("delivered %+v %+v", p, p.Properties)
			}
		case <-ctx.Done():
			t.Fatal("nothing delivered")
		}
	}
}

// TestPahoV311 runs Eclipse paho.mqtt.golang over MQTT 3.1.1.
func TestPahoV311(t *testing.T) {
	s := newServer(t, nil)
	received := make(chan string, 10)
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + s.addr).SetClientID("v3").
		SetUsername("u").SetPassword("ok").SetProtocolVersion(4).SetAutoReconnect(false)
	c := mqtt3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe("a/+", 2, func(_ mqtt3.Client, m mqtt3.Message) { received <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	for qos := range byte(3) {
		if tok := c.Publish("a/b", qos, false, []byte{'0' + qos}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		select {
		case m := <-received:
			if m != string([]byte{'0' + qos}) {
				t.Fatalf("got %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("QoS %d not delivered", qos)
		}
	}
}
