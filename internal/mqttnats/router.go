// Package mqttnats joins the MQTT servers of a cluster's nodes through
// NATS: each node forwards what is published on it, and injects into its
// own routing what the other nodes forward to the subjects its
// subscriptions need (interest.go); NATS queue groups share the
// $share subscriptions, and JetStream orders the connections of a client
// identifier and keeps the retained messages and the persistent sessions
// (sessions.go), which the core (internal/mqtt) resumes on any node. The
// core decides every delivery.
package mqttnats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Prefix begins every subject carrying an MQTT message; sessionSubject
// carries the client identifiers that connected on a node, each with its
// claim: the sequence number the claims stream (JetStream) gave it.
const (
	Prefix         = "thingid.mqtt"
	sessionSubject = "thingid.mqttsession"
	claimSubject   = "thingid.mqttclaim"
	claimStream    = "THINGID_MQTT_CLAIMS"
	// retainedPrefix carries a copy of each retained message (or its
	// clearing), which the retained stream keeps, the last per topic, for
	// the nodes that start later.
	retainedPrefix = "thingid.mqttretained"
	retainedStream = "THINGID_MQTT_RETAINED"
)

// requestTimeout bounds a request to JetStream: a connection waits for its
// claim before its CONNACK.
const requestTimeout = 5 * time.Second

// pingInterval is how often a node asks NATS whether it is still there;
// after two unanswered pings the link counts as lost. nats.go's default
// (two minutes) would leave a node cut off by a partition unaware of it
// for four.
const pingInterval = 2 * time.Second

// errCutOff refuses what needs the cluster while NATS is unreachable.
var errCutOff = errors.New("mqttnats: the cluster's NATS is unreachable from this node")

// Headers of a forwarded message.
const (
	hdrNode    = "Thingid-Node"
	hdrQoS     = "Mqtt-Qos"
	hdrRetain  = "Mqtt-Retain"
	hdrFrom    = "Mqtt-From"
	hdrExpires = "Mqtt-Expires" // Unix milliseconds
	hdrProps   = "Mqtt-Props"   // JSON of the message's properties
	hdrClaim   = "Thingid-Claim"
	hdrClean   = "Mqtt-Clean-Start"
)

// Router is a node's mqtt.Remote on a NATS connection.
type Router struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	node string
	log  *slog.Logger
	subs []*nats.Subscription
	in   *interest // this node's subscriptions' subjects
	// repeats are the QoS 2 exchanges taken live here (exchange.go).
	repeats *repeats

	mu  sync.Mutex
	srv *mqtt.Server // once started
	// shared are the queue subscriptions of this node's shared
	// subscriptions, by $share filter; nil before Start.
	shared map[string][]*nats.Subscription
	// fresh are the topics whose retained message came live while Start
	// loads the retained stream (nil otherwise): newer than the stream's.
	fresh map[string]bool
	// sessions keep the persistent sessions in JetStream (Sessions); nil
	// when the server keeps its own.
	sessions *Sessions
	// Replicas is how many NATS servers keep each JetStream stream and the
	// sessions' bucket, set before Sessions and Start; 0 is 1.
	Replicas int
	// NodeTTL is how long a node's liveness key outlives its last renewal
	// (orphans.go), set before Sessions; 0 is DefaultNodeTTL. The sessions
	// a node held are taken over by another that long after it died.
	NodeTTL time.Duration
	// Forwarded and Injected count messages sent to and taken from NATS;
	// Failed, messages that could not be forwarded or were malformed;
	// Claims, the connections claimed here; Queued, messages stored for
	// persistent sessions other nodes hold or nobody does, and
	// QueueDropped, those a session's full queue refused or that failed;
	// Adopted, the sessions of ended nodes this node took (orphans.go), and
	// AdoptedWills, the wills of their connections without sessions it
	// published (wills.go).
	Forwarded, Injected, Failed, Claims, Queued, QueueDropped, Adopted, AdoptedWills atomic.Int64
}

// Dial connects to NATS at url with opts as node (unique in the cluster).
// Start the Router once the server it injects into exists.
func Dial(url, node string, log *slog.Logger, opts ...nats.Option) (*Router, error) {
	if node == "" {
		return nil, errors.New("mqttnats: a node name is required")
	}
	opts = append([]nats.Option{nats.Name("thingid " + node), nats.MaxReconnects(-1),
		nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(2)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("mqttnats: connecting to %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("mqttnats: %w", err)
	}
	r := &Router{nc: nc, js: js, node: node, log: log, in: newInterest(), shared: map[string][]*nats.Subscription{}, repeats: newRepeats(repeatWindow(DefaultNodeTTL))}
	nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) { r.cutOff(err) })
	nc.SetReconnectHandler(func(*nats.Conn) { r.log.Info("mqtt cluster: NATS reachable again; taking MQTT connections") })
	return r, nil
}

// cutOff ends every MQTT connection of this node when it loses NATS: what
// other nodes publish no longer reaches them, and a subscriber must not
// take that silence for a quiet topic. They are told to connect again
// elsewhere (MQTT 5 DISCONNECT 0x9C, use another server; a 3.1.1 client's
// connection is closed), which the load balancer's check of /readyz/mqtt
// (Ready) makes a node of the cluster that can deliver; new CONNECTs here
// are refused (Claim) until NATS is back.
func (r *Router) cutOff(err error) {
	if r.nc.IsClosed() {
		return // Close, not a lost link
	}
	r.log.Warn("mqtt cluster: NATS unreachable; ending this node's MQTT connections and refusing new ones until it is back", "err", err)
	r.mu.Lock()
	s := r.srv
	r.mu.Unlock()
	if s == nil {
		return
	}
	s.Each(func(c *mqtt.Client) bool {
		s.Disconnect(c.ID, packet.UseAnotherServer, "this node lost the cluster's messages: connect again", false)
		return true
	})
}

// Ready says whether this node can take MQTT connections: not while NATS
// is unreachable.
func (r *Router) Ready() error {
	if !r.nc.IsConnected() {
		return errCutOff
	}
	return nil
}

// Start injects into s every message the other nodes forward, and ends
// the sessions that newer connections elsewhere claimed. The NATS server
// must run JetStream: one stream orders the claims.
func (r *Router) Start(s *mqtt.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	replicas := max(r.Replicas, 1)
	// Only the sequence numbers matter; the stream keeps the last claim
	// (on disk, so that they keep growing when NATS restarts).
	if _, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: claimStream, Subjects: []string{claimSubject}, MaxMsgs: 1, Storage: jetstream.FileStorage, Replicas: replicas,
		Description: "thingid: the order of MQTT connections across nodes",
	}); err != nil {
		return fmt.Errorf("mqttnats: creating the stream %s with %d replicas (does the NATS server run JetStream, on as many servers as mqtt.cluster.nats.replicas?): %w", claimStream, replicas, err)
	}
	retained, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: retainedStream, Subjects: []string{retainedPrefix + ".>"}, MaxMsgsPerSubject: 1, Storage: jetstream.FileStorage, Replicas: replicas,
		Description: "thingid: the MQTT retained messages, the last one per topic",
	})
	if err != nil {
		return fmt.Errorf("mqttnats: creating the stream %s: %w", retainedStream, err)
	}
	r.mu.Lock()
	r.fresh = map[string]bool{}
	r.mu.Unlock()
	if err := r.startInterest(s); err != nil {
		return fmt.Errorf("mqttnats: subscribing: %w", err)
	}
	sub, err := r.nc.Subscribe(sessionSubject, func(msg *nats.Msg) {
		if msg.Header.Get(hdrNode) == r.node {
			return
		}
		claim, err := strconv.ParseUint(msg.Header.Get(hdrClaim), 10, 64)
		if err != nil {
			r.Failed.Add(1)
			r.log.Warn("mqtt cluster: a session announcement without a claim", "node", msg.Header.Get(hdrNode), "err", err)
			return
		}
		s.Supersede(string(msg.Data), claim, msg.Header.Get(hdrClean) == "1")
	})
	if err != nil {
		return fmt.Errorf("mqttnats: subscribing: %w", err)
	}
	r.subs = append(r.subs, sub)
	r.mu.Lock()
	r.srv = s
	for filter := range r.shared { // the restored sessions'
		if err := r.share(filter); err != nil {
			r.mu.Unlock()
			return err
		}
	}
	r.mu.Unlock()
	if r.sessions != nil {
		if err := r.sessions.start(s); err != nil {
			return err
		}
	}
	// Forwarding starts only once the subscriptions are known to the server.
	if err := r.nc.Flush(); err != nil {
		return fmt.Errorf("mqttnats: %w", err)
	}
	return r.loadRetained(ctx, retained, s)
}

// loadRetained keeps the retained messages of the stream, the cluster's
// latest for each topic, unless one came live meanwhile; a clearing there
// clears the topic here (its messages restored from a node's own store
// may be older).
func (r *Router) loadRetained(ctx context.Context, stream jetstream.Stream, s *mqtt.Server) error {
	defer func() {
		r.mu.Lock()
		r.fresh = nil
		r.mu.Unlock()
	}()
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("mqttnats: the stream %s: %w", retainedStream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{retainedPrefix + ".>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		return fmt.Errorf("mqttnats: reading the stream %s: %w", retainedStream, err)
	}
	// At least one message comes, the last of them with nothing pending.
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("mqttnats: reading the stream %s: %w", retainedStream, err)
	}
	defer it.Stop()
	for {
		// Each message in time, however many there are.
		jm, err := it.Next(jetstream.NextMaxWait(requestTimeout))
		if err != nil {
			return fmt.Errorf("mqttnats: reading the stream %s: %w", retainedStream, err)
		}
		meta, err := jm.Metadata()
		if err != nil {
			return fmt.Errorf("mqttnats: reading the stream %s: %w", retainedStream, err)
		}
		if m, err := decode(retainedPrefix, &nats.Msg{Subject: jm.Subject(), Header: jm.Headers(), Data: jm.Data()}); err != nil {
			r.Failed.Add(1)
			r.log.Warn("mqtt cluster: a retained message from NATS does not decode", "subject", jm.Subject(), "err", err)
		} else {
			if !m.Expires.IsZero() && !time.Now().Before(m.Expires) {
				m.Payload = nil // §3.3.2.3.3: expired, no longer kept
			}
			r.mu.Lock()
			if !r.fresh[m.Topic] {
				s.KeepRetained(m)
			}
			r.mu.Unlock()
		}
		if meta.NumPending == 0 {
			return nil
		}
	}
}

// Shared joins this node to the NATS queue group of shared subscription
// filter while the server has members of it, and leaves it after: NATS
// gives each message to one node of the group, the node to one member.
func (r *Router) Shared(filter string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		r.shared[filter] = nil // joined at Start
		return
	}
	if err := r.share(filter); err != nil {
		r.Failed.Add(1)
		r.log.Error("mqtt cluster: a shared subscription's queue group", "filter", filter, "err", err)
	}
}

// share subscribes to or unsubscribes from filter's queue group as the
// server has members of it or not; r.mu is held.
func (r *Router) share(filter string) error {
	subs, joined := r.shared[filter], r.shared[filter] != nil
	switch members := r.srv.Members(filter) > 0; {
	case members && !joined:
		// $share/<group>/<filter>: the filter names the subjects, the
		// whole the queue group (hashed: a queue name is one token).
		_, inner, _ := strings.Cut(filter[len("$share/"):], "/")
		sum := sha256.Sum256([]byte(filter))
		queue := "thingid-" + hex.EncodeToString(sum[:12])
		for _, subject := range FilterSubjects(Prefix, inner) {
			sub, err := r.nc.QueueSubscribe(subject, queue, func(msg *nats.Msg) { r.deliverShared(msg, filter) })
			if err != nil {
				for _, s := range subs {
					s.Unsubscribe()
				}
				return fmt.Errorf("mqttnats: joining %s: %w", queue, err)
			}
			subs = append(subs, sub)
		}
		r.shared[filter] = subs
	case !members:
		for _, s := range subs {
			s.Unsubscribe()
		}
		delete(r.shared, filter)
	}
	return nil
}

// deliverShared hands a message of shared subscription filter, from any
// node, this one included, to a member here.
func (r *Router) deliverShared(msg *nats.Msg, filter string) {
	m, err := decode(Prefix, msg)
	if err != nil {
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: a message from NATS does not decode", "subject", msg.Subject, "node", msg.Header.Get(hdrNode), "err", err)
		return
	}
	r.mu.Lock()
	s := r.srv
	r.mu.Unlock()
	if !s.DeliverShared(m, filter) {
		// The last member left as NATS gave this node the message.
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: a shared subscription's message found no member", "filter", filter, "topic", m.Topic)
	}
}

// Forward publishes m to the other nodes; the server's own topics ($SYS)
// stay on their node.
func (r *Router) Forward(m *mqtt.Message) {
	if strings.HasPrefix(m.Topic, "$") {
		return
	}
	msg, err := r.encode(Subject(Prefix, m.Topic), m)
	if err != nil {
		r.Failed.Add(1)
		r.log.Error("mqtt cluster: encoding properties failed", "topic", m.Topic, "err", err)
		return
	}
	if r.sessions != nil && m.QoS > 0 {
		// Stored for the persistent sessions first: the publisher's
		// acknowledgement waits for it.
		if ids := r.sessions.queue(m); len(ids) > 0 {
			b, _ := json.Marshal(ids)
			msg.Header.Set(hdrQueuedFor, string(b))
		}
	}
	err = r.nc.PublishMsg(msg)
	if err == nil && m.Retain {
		// The same message for the retained stream: headers are shared.
		err = r.nc.PublishMsg(&nats.Msg{Subject: Subject(retainedPrefix, m.Topic), Header: msg.Header, Data: msg.Data})
	}
	if err != nil {
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: forwarding failed", "topic", m.Topic, "err", err)
		return
	}
	r.Forwarded.Add(1)
}

// encode is m as a NATS message on subject, with its QoS, retain flag,
// publisher, expiry and properties in headers.
func (r *Router) encode(subject string, m *mqtt.Message) (*nats.Msg, error) {
	msg := nats.NewMsg(subject)
	msg.Data = m.Payload
	msg.Header.Set(hdrNode, r.node)
	msg.Header.Set(hdrMsg, r.in.nextID())
	msg.Header.Set(hdrQoS, strconv.Itoa(int(m.QoS)))
	if m.Retain {
		msg.Header.Set(hdrRetain, "1")
	}
	msg.Header.Set(hdrFrom, m.From)
	if m.Exchange != "" {
		msg.Header.Set(hdrExchange, m.Exchange)
	}
	if !m.Expires.IsZero() {
		msg.Header.Set(hdrExpires, strconv.FormatInt(m.Expires.UnixMilli(), 10))
	}
	if m.Props != nil {
		p, err := json.Marshal(m.Props)
		if err != nil {
			return nil, err
		}
		msg.Header.Set(hdrProps, string(p))
	}
	return msg, nil
}

// Claim orders a connection of clientID among the cluster's by the
// sequence number the claims stream gives it, and announces it with that
// number: a node where clientID has an older connection ends it
// (Server.Supersede), one where it has a newer one ignores it, however
// late it arrives.
func (r *Router) Claim(clientID string, clean bool) (uint64, error) {
	if err := r.Ready(); err != nil {
		return 0, err // at once, not after requestTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	claim, err := r.nextClaim(ctx, clientID)
	if err != nil {
		return 0, err
	}
	r.Claims.Add(1)
	r.announce(clientID, claim, clean)
	return claim, nil
}

// nextClaim is a new place in the cluster's order of connections.
func (r *Router) nextClaim(ctx context.Context, clientID string) (uint64, error) {
	ack, err := r.js.Publish(ctx, claimSubject, nil)
	if err != nil {
		r.Failed.Add(1)
		return 0, fmt.Errorf("mqttnats: claiming %q: %w", clientID, err)
	}
	return ack.Sequence, nil
}

// announce tells the other nodes that claim holds clientID's session now.
func (r *Router) announce(clientID string, claim uint64, clean bool) {
	msg := nats.NewMsg(sessionSubject)
	msg.Data = []byte(clientID)
	msg.Header.Set(hdrNode, r.node)
	msg.Header.Set(hdrClaim, strconv.FormatUint(claim, 10))
	if clean {
		msg.Header.Set(hdrClean, "1")
	}
	if err := r.nc.PublishMsg(msg); err != nil {
		// The claim stands: a later connection elsewhere still ends this one.
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: announcing a session failed", "client", clientID, "err", err)
	}
}

// decode is the message a NATS message under prefix forwards.
func decode(prefix string, msg *nats.Msg) (*mqtt.Message, error) {
	topic, err := Topic(prefix, msg.Subject)
	if err != nil {
		return nil, err
	}
	qos, err := strconv.Atoi(msg.Header.Get(hdrQoS))
	if err != nil || qos < 0 || qos > 2 {
		return nil, fmt.Errorf("header %s: %q is no QoS", hdrQoS, msg.Header.Get(hdrQoS))
	}
	m := &mqtt.Message{Topic: topic, Payload: msg.Data, QoS: byte(qos), Retain: msg.Header.Get(hdrRetain) == "1", From: msg.Header.Get(hdrFrom),
		Exchange: msg.Header.Get(hdrExchange)}
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
	if q := msg.Header.Get(hdrQueuedFor); q != "" {
		if err := json.Unmarshal([]byte(q), &m.QueuedFor); err != nil {
			return nil, fmt.Errorf("header %s: %w", hdrQueuedFor, err)
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
		{"thingid_mqtt_cluster_failed_total", "MQTT messages, claims or session announcements that could not be forwarded, or arrived malformed.", &r.Failed},
		{"thingid_mqtt_cluster_claims_total", "MQTT connections claimed on this node in the cluster's order (JetStream).", &r.Claims},
		{"thingid_mqtt_cluster_session_queued_total", "MQTT QoS 1 and 2 messages published on this node and stored (JetStream) for persistent sessions another node holds, or none.", &r.Queued},
		{"thingid_mqtt_cluster_session_queue_dropped_total", "MQTT messages not stored for a persistent session: its queue was full (mqtt.limits.inflight) or JetStream failed.", &r.QueueDropped},
		{"thingid_mqtt_cluster_sessions_adopted_total", "Persistent MQTT sessions whose node ended (its liveness key expired) that this node took over, to publish their wills and expire them unless their clients return.", &r.Adopted},
		{"thingid_mqtt_cluster_wills_adopted_total", "MQTT wills of connections without persistent sessions on nodes that ended, published by this node.", &r.AdoptedWills},
		{"thingid_mqtt_cluster_duplicates_total", "Copies of one MQTT message that NATS sent this node for overlapping filters, dropped.", &r.in.Duplicates},
		{"thingid_mqtt_cluster_qos2_repeats_total", "Copies of MQTT QoS 2 messages a publisher sent again after the node that routed them died, dropped here: delivered live here, or stored for a session, already.", &r.repeats.Dropped},
	} {
		v := c.v
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 { return float64(v.Load()) })); err != nil {
			return fmt.Errorf("mqttnats: %w", err)
		}
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "thingid_mqtt_cluster_sessions_held",
		Help: "Persistent MQTT sessions of the cluster this node holds (connected here, or away since), each reading its queue from JetStream."},
		func() float64 { return float64(r.heldSessions()) })); err != nil {
		return fmt.Errorf("mqttnats: %w", err)
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "thingid_mqtt_cluster_subjects", Help: "NATS subjects this node subscribes to for its MQTT subscriptions (not shared ones): what other nodes' messages reach it for."}, func() float64 { return float64(r.Subjects()) })); err != nil {
		return fmt.Errorf("mqttnats: %w", err)
	}
	return nil
}

// Close stops injecting and closes the NATS connection, after sending what
// was forwarded.
func (r *Router) Close() {
	r.stopInterest()
	r.mu.Lock()
	for _, subs := range r.shared {
		r.subs = append(r.subs, subs...)
	}
	r.shared = map[string][]*nats.Subscription{}
	r.mu.Unlock()
	for _, sub := range r.subs {
		sub.Unsubscribe()
	}
	r.mu.Lock()
	sessions := r.sessions
	r.mu.Unlock()
	if sessions != nil {
		sessions.close()
	}
	if err := r.nc.Flush(); err != nil {
		r.log.Warn("mqtt cluster: flushing NATS failed", "err", err)
	}
	r.nc.Close()
}
