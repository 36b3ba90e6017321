// Package mqttnats joins the MQTT servers of a cluster's nodes through
// NATS: each node forwards what is published on it, and injects what the
// other nodes forward into its own routing.
package mqttnats

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Prefix begins every subject carrying an MQTT message; sessionSubject
// carries the client identifiers that connected on a node.
const (
	Prefix         = "thingid.mqtt"
	sessionSubject = "thingid.mqttsession"
)

// Headers of a forwarded message.
const (
	hdrNode    = "Thingid-Node"
	hdrQoS     = "Mqtt-Qos"
	hdrRetain  = "Mqtt-Retain"
	hdrFrom    = "Mqtt-From"
	hdrExpires = "Mqtt-Expires" // Unix milliseconds
	hdrProps   = "Mqtt-Props"   // JSON of the message's properties
)

// Router is a node's mqtt.Remote on a NATS connection.
type Router struct {
	nc   *nats.Conn
	node string
	log  *slog.Logger
	subs []*nats.Subscription
	// Forwarded and Injected count messages sent to and taken from NATS;
	// Failed, messages that could not be forwarded or were malformed.
	Forwarded, Injected, Failed atomic.Int64
}

// Dial connects to NATS at url with opts as node (unique in the cluster).
// Start the Router once the server it injects into exists.
func Dial(url, node string, log *slog.Logger, opts ...nats.Option) (*Router, error) {
	if node == "" {
		return nil, errors.New("mqttnats: a node name is required")
	}
	opts = append([]nats.Option{nats.Name("thingid " + node), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("mqttnats: connecting to %s: %w", url, err)
	}
	return &Router{nc: nc, node: node, log: log}, nil
}

// Start injects into s every message the other nodes forward.
func (r *Router) Start(s *mqtt.Server) error {
	sub, err := r.nc.Subscribe(Prefix+".>", func(msg *nats.Msg) {
		if msg.Header.Get(hdrNode) == r.node {
			return // its own, already routed here
		}
		m, err := decode(msg)
		if err != nil {
			r.Failed.Add(1)
			r.log.Warn("mqtt cluster: a message from NATS does not decode", "subject", msg.Subject, "node", msg.Header.Get(hdrNode), "err", err)
			return
		}
		r.Injected.Add(1)
		s.Inject(m)
	})
	if err != nil {
		return fmt.Errorf("mqttnats: subscribing: %w", err)
	}
	r.subs = append(r.subs, sub)
	sub, err = r.nc.Subscribe(sessionSubject, func(msg *nats.Msg) {
		if msg.Header.Get(hdrNode) == r.node {
			return
		}
		// The client connected elsewhere: its session here ends, without
		// its will (the session is not carried over).
		s.Disconnect(string(msg.Data), packet.SessionTakenOver, "the client connected to another node", true)
	})
	if err != nil {
		return fmt.Errorf("mqttnats: subscribing: %w", err)
	}
	r.subs = append(r.subs, sub)
	// Forwarding starts only once the subscriptions are known to the server.
	return r.nc.Flush()
}

// Forward publishes m to the other nodes; the server's own topics ($SYS)
// stay on their node.
func (r *Router) Forward(m *mqtt.Message) {
	if strings.HasPrefix(m.Topic, "$") {
		return
	}
	msg := nats.NewMsg(Subject(Prefix, m.Topic))
	msg.Data = m.Payload
	msg.Header.Set(hdrNode, r.node)
	msg.Header.Set(hdrQoS, strconv.Itoa(int(m.QoS)))
	if m.Retain {
		msg.Header.Set(hdrRetain, "1")
	}
	msg.Header.Set(hdrFrom, m.From)
	if !m.Expires.IsZero() {
		msg.Header.Set(hdrExpires, strconv.FormatInt(m.Expires.UnixMilli(), 10))
	}
	if m.Props != nil {
		p, err := json.Marshal(m.Props)
		if err != nil {
			r.Failed.Add(1)
			r.log.Error("mqtt cluster: encoding properties failed", "topic", m.Topic, "err", err)
			return
		}
		msg.Header.Set(hdrProps, string(p))
	}
	if err := r.nc.PublishMsg(msg); err != nil {
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: forwarding failed", "topic", m.Topic, "err", err)
		return
	}
	r.Forwarded.Add(1)
}

// Attached tells the other nodes that clientID connected here.
func (r *Router) Attached(clientID string) {
	msg := nats.NewMsg(sessionSubject)
	msg.Data = []byte(clientID)
	msg.Header.Set(hdrNode, r.node)
	if err := r.nc.PublishMsg(msg); err != nil {
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: announcing a session failed", "client", clientID, "err", err)
	}
}

// decode is the message a NATS message forwards.
func decode(msg *nats.Msg) (*mqtt.Message, error) {
	topic, err := Topic(Prefix, msg.Subject)
	if err != nil {
		return nil, err
	}
	qos, err := strconv.Atoi(msg.Header.Get(hdrQoS))
	if err != nil || qos < 0 || qos > 2 {
		return nil, fmt.Errorf("header %s: %q is no QoS", hdrQoS, msg.Header.Get(hdrQoS))
	}
	m := &mqtt.Message{Topic: topic, Payload: msg.Data, QoS: byte(qos), Retain: msg.Header.Get(hdrRetain) == "1", From: msg.Header.Get(hdrFrom)}
	if e := msg.Header.Get(hdrExpires); e != "" {
		ms, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", hdrExpires, err)
		}
		m.Expires = time.UnixMilli(ms)
	}
	if p := msg.Header.Get(hdrProps); p != "" {
		m.Props = new(packet.Properties)
		if err := json.Unmarshal([]byte(p), m.Props); err != nil {
			return nil, fmt.Errorf("header %s: %w", hdrProps, err)
		}
	}
	return m, nil
}

// Register registers the Router's counters with reg.
func (r *Router) Register(reg prometheus.Registerer) error {
	for _, c := range []struct {
		name, help string
		v          *atomic.Int64
	}{
		{"thingid_mqtt_cluster_forwarded_total", "MQTT messages published on this node and forwarded to the other nodes through NATS.", &r.Forwarded},
		{"thingid_mqtt_cluster_injected_total", "MQTT messages other nodes forwarded, routed on this node.", &r.Injected},
		{"thingid_mqtt_cluster_failed_total", "MQTT messages or session announcements that could not be forwarded, or arrived malformed.", &r.Failed},
	} {
		v := c.v
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 { return float64(v.Load()) })); err != nil {
			return fmt.Errorf("mqttnats: %w", err)
		}
	}
	return nil
}

// Close stops injecting and closes the NATS connection, after sending what
// was forwarded.
func (r *Router) Close() {
	for _, sub := range r.subs {
		sub.Unsubscribe()
	}
	if err := r.nc.Flush(); err != nil {
		r.log.Warn("mqtt cluster: flushing NATS failed", "err", err)
	}
	r.nc.Close()
}
