package broker

import (
	"bytes"
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// hook is thingid's only authentication and ACL hook on the mochi server.
type hook struct {
	mqtt.HookBase
	b        *Broker
	ctx      context.Context
	sessions sync.Map // *mqtt.Client → *session
	events   *eventQueue
}

// session is what the broker knows of one MQTT session: connected, or kept
// for a persistent client that is away.
type session struct {
	cl      *mqtt.Client
	state   atomic.Pointer[sessionState]
	revoked atomic.Bool // no more messages in or out; the session is discarded
	gone    atomic.Bool // discarded
	// reclaimed: the thing took its client identifier back from a connected
	// identity; its CONNACK says Session Present 0 (reclaim).
	reclaimed atomic.Bool

	// policy is the policies' verdict on a thing acting for a user; nil
	// when they do not govern the session. deciding serialises deciding it.
	policy   atomic.Pointer[verdict]
	deciding sync.Mutex

	mu          sync.Mutex
	timer       *time.Timer // ends the connection when the token expires
	policyTimer *time.Timer // decides the policy verdict again when its time is up
}

// sessionState is swapped whole when the identity is refreshed or re-authenticates.
type sessionState struct {
	id *Identity
	g  *grants
}

func (h *hook) ID() string { return "thingid" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish,
		mqtt.OnSubscribed, mqtt.OnAuthPacket, mqtt.OnSessionEstablish, mqtt.OnDisconnect,
		mqtt.OnClientExpired, mqtt.OnPublishDropped, mqtt.OnPacketEncode,
	}, []byte{b})
}

func (h *hook) session(cl *mqtt.Client) *session {
	if v, ok := h.sessions.Load(cl); ok {
		return v.(*session)
	}
	return nil
}

// state is the identity and grants of a live session, nil when there is none
// or it was revoked.
func (h *hook) state(cl *mqtt.Client) *sessionState {
	s := h.session(cl)
	if s == nil || s.revoked.Load() {
		return nil
	}
	return s.state.Load()
}

// OnConnect authenticates the client and compiles its grants. A refusal is
// answered here with a precise CONNACK: mochi's own refusal is always
// "bad username or password".
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	var id *Identity
	var g *grants
	var v *verdict
	var r *refusal
	h.b.workers.run(func() {
		ctx, cancel := context.WithTimeout(h.ctx, h.b.opts.Limits.ConnectTimeout)
		defer cancel()
		if id, r = h.authenticate(ctx, cl, pk); r == nil {
			g = compile(h.b.opts.Rules, id)
			r = h.admit(cl, id, g)
		}
		if r == nil && h.governed(id) {
			v, r = h.admitPolicy(ctx, cl, id, 0, "mqtt.connect.deny")
		}
	})
	if r != nil {
		h.b.metrics.authFailures.WithLabelValues(r.label).Inc()
		if r.label != "policy" { // audited with its rule
			h.b.audit.deny(id, cl, "mqtt.connect.deny", r.label, r.code.Reason)
		}
		sendConnack(cl, r)
		return r.code
	}
	detach(cl, id)
	// mochi 2.7.9 mishandles a client's Receive Maximum (MQTT 5 §4.9): the
	// messages it holds back are forgotten once sent, and its lookup of them
	// takes a read lock twice, which deadlocks under load. Flow control is
	// left off, as for MQTT 3.1.1 clients: the limits are mqtt.limits.inflight
	// and mqtt.limits.queue.
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
	s := &session{cl: cl}
	s.state.Store(&sessionState{id: id, g: g})
	if v != nil {
		s.policy.Store(v)
		h.armPolicy(s, v.until)
	}
	h.sessions.Store(cl, s)
	h.arm(s, id.Expires)
	return nil
}

// detach keeps nothing of the CONNECT packet for the connection's lifetime.
// mochi decodes strings without copying, so the client identifier, the
// MQTT 5 Authentication Method and user properties it keeps, and the will,
// point into the packet's buffer: that held the buffer (0.7 KiB) and the
// bearer token in it as long as the connection lasted. It also keeps a copy
// of the Authentication Data, the token itself, which nothing reads again (a
// re-authentication brings its own). The user name, unused as a credential,
// becomes the identity record of a persistent session (record.go) and is
// dropped for a clean one.
func detach(cl *mqtt.Client, id *Identity) {
	cl.ID = id.ClientIdentifier
	p := &cl.Properties
	p.Props.AuthenticationMethod = id.AuthMethod
	p.Props.AuthenticationData = nil
	p.Props.User = cloneUser(p.Props.User)
	p.Username = nil
	if durable(cl) {
		p.Username = encodeRecord(id)
	}
	if atomic.LoadUint32(&p.Will.Flag) == 1 {
		p.Will.TopicName = strings.Clone(p.Will.TopicName)
		p.Will.Payload = bytes.Clone(p.Will.Payload)
		p.Will.User = cloneUser(p.Will.User)
	}
}

func cloneUser(ps []packets.UserProperty) []packets.UserProperty {
	out := slices.Clone(ps)
	for i, u := range out {
		out[i] = packets.UserProperty{Key: strings.Clone(u.Key), Val: strings.Clone(u.Val)}
	}
	return out
}

// admit applies the checks that need the compiled grants.
func (h *hook) admit(cl *mqtt.Client, id *Identity, g *grants) *refusal {
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && !(validTopic(cl.Properties.Will.TopicName) && g.canPublish(cl.Properties.Will.TopicName)) {
		// mochi publishes the will without asking the ACL.
		return refuse(packets.ErrNotAuthorized, "will", "the will topic is not one this identity may publish to")
	}
	if existing, ok := h.b.server.Clients.Get(cl.ID); ok {
		// A thing always gets its own client identifier back (reclaim);
		// otherwise taking over a session would inherit its subscriptions
		// and queued messages.
		if st := h.state(existing); st != nil && st.id.principal() != id.principal() && id.Kind != kindThing {
			return refuse(packets.ErrClientIdentifierNotValid, "session_owner", "this client identifier's session belongs to another identity")
		}
	}
	return nil
}

// OnConnectAuthenticate lets in exactly the clients OnConnect admitted.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.state(cl) != nil
}

// OnACLCheck answers for every PUBLISH from a client (write), and for every
// SUBSCRIBE filter and every delivery, retained and queued ones included
// (read): by the topic rules, and for a thing acting for a user by the
// policies' verdict, cached for the connection.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.session(cl)
	if s == nil || s.revoked.Load() {
		return false
	}
	st := s.state.Load()
	if !write {
		return st.g.canSubscribe(topic) && h.maySubscribe(s)
	}
	if topic == "" {
		return true // a topic alias: OnPublish checks the name it stands for
	}
	if !st.g.canPublish(topic) {
		h.b.metrics.denied.WithLabelValues("publish").Inc()
		h.b.audit.deny(st.id, cl, "mqtt.publish.deny", "topic", topic)
		return false
	}
	return h.mayPublish(s, topic)
}

// OnPublish checks the topic a topic alias stands for (MQTT 5 §3.3.2.3.4):
// mochi resolves aliases after its ACL check.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.Properties.TopicAliasFlag {
		return pk, nil
	}
	if s := h.session(cl); s != nil && !s.revoked.Load() && s.state.Load().g.canPublish(pk.TopicName) && h.mayPublish(s, pk.TopicName) {
		return pk, nil
	}
	h.b.metrics.denied.WithLabelValues("publish").Inc()
	if pk.FixedHeader.Qos > 0 {
		return pk, packets.ErrNotAuthorized // PUBACK/PUBREC 0x87
	}
	return pk, packets.ErrRejectPacket
}

// OnSubscribed counts and audits the filters refused: by the policies
// (the first one under a verdict), or by the topic rules.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	s := h.session(cl)
	for i, c := range codes {
		if c != packets.ErrNotAuthorized.Code || i >= len(pk.Filters) || s == nil {
			continue
		}
		id := s.state.Load().id
		if h.auditSubscribe(s, id, pk.Filters[i].Filter) {
			continue
		}
		h.b.metrics.denied.WithLabelValues("subscribe").Inc()
		h.b.audit.deny(id, cl, "mqtt.subscribe.deny", "filter", pk.Filters[i].Filter)
	}
}

// OnSessionEstablish runs before mochi hands an existing session to the new
// connection: messages queued for it are dropped unless the new identity may
// read them, since mochi resends them without asking the ACL.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	existing, ok := h.b.server.Clients.Get(cl.ID)
	st := h.state(cl)
	if !ok || existing == cl || st == nil {
		return
	}
	if old := h.session(existing); old != nil {
		if prev := old.state.Load(); prev != nil && prev.id.principal() != st.id.principal() {
			// Only a thing gets here with another identity's session (admit).
			h.reclaim(h.session(cl), old)
			return
		}
		old.disarm()
		h.sessions.Delete(existing)
	}
	if pk.Connect.Clean {
		return // mochi discards the old session
	}
	mayRead := h.maySubscribe(h.session(cl))
	for _, m := range existing.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type == packets.Publish && (!mayRead || !st.g.canSubscribe(m.TopicName)) {
			if existing.State.Inflight.Delete(m.PacketID) {
				atomic.AddInt64(&h.b.server.Info.Inflight, -1)
				h.b.store.OnQosDropped(existing, m)
				h.b.metrics.denied.WithLabelValues("deliver").Inc()
			}
		}
	}
}

// OnDisconnect ends the token deadline; a revoked session is discarded, a
// persistent one stays (with its identity) for the client to come back.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	s := h.session(cl)
	if s == nil {
		return
	}
	s.disarm()
	switch {
	case s.revoked.Load():
		h.discard(s)
	case expire && !cl.IsTakenOver():
		h.sessions.Delete(cl)
	}
}

// OnPublishDropped runs on the publishing client's goroutine (mochi passes
// the subscriber) when a message finds the subscriber's write queue full,
// and yields. Many publishers
// feeding one subscriber are as many busy reading goroutines against the
// subscriber's one writer: without yielding, the writer got its turn so
// seldom that nine QoS 0 messages in ten were dropped, each after the full
// cost of routing it. Yielding lets the writer drain its queue and slows the
// publishers' reads instead, through TCP. It never waits: a subscriber that
// stops reading cannot hold up a publisher.
func (h *hook) OnPublishDropped(*mqtt.Client, packets.Packet) {
	runtime.Gosched()
}

// OnClientExpired forgets a session mochi expired.
func (h *hook) OnClientExpired(cl *mqtt.Client) { h.sessions.Delete(cl) }

// arm ends the connection when its token (or certificate) expires. Each
// session has one runtime timer: Go keeps them in a per-P heap, so arming,
// re-arming and stopping cost O(log n) at 100,000 connections.
func (h *hook) arm(s *session, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if at.IsZero() {
		return
	}
	s.timer = time.AfterFunc(at.Sub(h.b.opts.Now()), func() {
		if !s.cl.Closed() {
			h.b.metrics.closed.WithLabelValues("expired").Inc()
			h.b.server.DisconnectClient(s.cl, packets.ErrMaxConnectTime)
		}
	})
}

func (s *session) disarm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range []**time.Timer{&s.timer, &s.policyTimer} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

var _ mqtt.Hook = (*hook)(nil)
