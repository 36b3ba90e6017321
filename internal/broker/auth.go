package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// auth is the broker's mqtt.Auth: who a client is, at CONNECT and AUTH,
// and what it may publish, subscribe to and receive. The core asks it with
// the session's lock held, so nothing here calls back into the server; what
// must (ending a connection) runs after the answer.
type auth struct {
	b        *Broker
	ctx      context.Context
	events   *eventQueue
	expiries *expiries
}

// session is what the broker knows of one MQTT session, connected or kept
// for a persistent client that is away: the core holds it as the Client's
// identity, and a new connection brings a new one.
type session struct {
	// listener and remote are where its connection came from, kept for
	// the admin API and the audit log while the client is away.
	listener, remote string

	state   atomic.Pointer[sessionState]
	revoked atomic.Bool // no more messages in or out; the session is discarded

	// policy is the policies' verdict on a thing acting for a user; nil
	// when they do not govern the session. deciding serialises deciding it.
	policy   atomic.Pointer[verdict]
	deciding sync.Mutex

	mu          sync.Mutex
	policyTimer *time.Timer // decides the policy verdict again when its time is up

	// pos and armed are the session's place in the broker's expiries
	// (under their lock): 1 + its index in the heap, 0 when out of it,
	// and how often it was armed or disarmed.
	pos   int32
	armed uint32
}

// sessionState is swapped whole when the identity is refreshed or re-authenticates.
type sessionState struct {
	id *Identity
	g  *grants
}

func newSession(id *Identity, rules []Rule) *session {
	s := &session{}
	s.state.Store(&sessionState{id: id, g: compile(rules, id)})
	return s
}

// sessionOf is the broker's session of cl, nil when it has none.
func sessionOf(cl *mqtt.Client) *session {
	s, _ := cl.Identity().(*session)
	return s
}

// live is the state of a session that was not revoked, nil otherwise.
func live(cl *mqtt.Client) (*session, *sessionState) {
	s := sessionOf(cl)
	if s == nil || s.revoked.Load() {
		return nil, nil
	}
	return s, s.state.Load()
}

// client is the core's session of s while s is its identity.
func (h *auth) client(s *session) *mqtt.Client {
	cl := h.b.server.Client(s.state.Load().id.ClientIdentifier)
	if cl == nil || sessionOf(cl) != s {
		return nil
	}
	return cl
}

// Connect authenticates the client and compiles its grants; a refusal is
// a *packet.Error, which the core answers in the CONNACK (MQTT 3.1.1: the
// nearest return code).
func (h *auth) Connect(ctx context.Context, cl *mqtt.Client, pk *packet.Connect, old any) error {
	// What the worker decides, in one variable the closure shares (one
	// allocation per CONNECT rather than one for each).
	var w struct {
		id          *Identity
		v           *verdict
		r           *refusal
		s, squatter *session
	}
	h.b.workers.run(func() {
		if w.id, w.r = h.authenticate(ctx, cl, pk); w.r != nil {
			return
		}
		w.s = newSession(w.id, h.b.opts.Rules)
		if w.squatter, w.r = h.admit(pk, w.s, old); w.r == nil && h.governed(w.id) {
			w.v, w.r = h.admitPolicy(ctx, cl, w.id, pk.Will != nil, 0, "mqtt.connect.deny")
		}
	})
	id, v, r, s, squatter := w.id, w.v, w.r, w.s, w.squatter
	if r != nil {
		h.b.metrics.authFailures.WithLabelValues(r.label).Inc()
		if r.label != "policy" { // audited with its rule
			h.b.audit.deny(id, cl, "mqtt.connect.deny", r.label, r.err.Reason)
		}
		return r.err
	}
	switch prev, _ := old.(*session); {
	case squatter != nil:
		h.reclaim(cl, squatter, id.Thing)
	case prev != nil && prev.revoked.Load():
		cl.ReplaceSession() // being discarded: nothing of it is handed over
	case prev != nil:
		h.disarm(prev)
	}
	if conn := cl.Conn(); conn != nil {
		s.listener, s.remote = listenerOf(conn).cfg.Name, conn.RemoteAddr().String()
	}
	if v != nil {
		s.policy.Store(v)
		h.armPolicy(s, v.until)
	}
	cl.SetIdentity(s)
	h.arm(s, id.Expires)
	return nil
}

// admit applies the checks that need the compiled grants: the will's
// topic, and who may take the client identifier's session. It returns the
// session of another identity that a thing reclaims its identifier from,
// ended once the CONNECT is admitted.
func (h *auth) admit(pk *packet.Connect, s *session, old any) (*session, *refusal) {
	st := s.state.Load()
	if pk.Will != nil && !st.g.canPublish(pk.Will.Topic) {
		return nil, refuse(packet.NotAuthorized, "will", "the will topic is not one this identity may publish to")
	}
	prev, ok := old.(*session)
	if !ok || prev.revoked.Load() || prev.state.Load().id.principal() == st.id.principal() {
		return nil, nil
	}
	// A thing always gets its own client identifier back (reclaim);
	// otherwise taking over a session would inherit its subscriptions and
	// queued messages.
	if st.id.Kind != kindThing {
		return nil, refuse(packet.ClientIdentifierNotValid, "session_owner", "this client identifier's session belongs to another identity")
	}
	return prev, nil
}

// Publish checks a PUBLISH (the topic an alias stands for included) and a
// will: by the topic rules, and for a thing acting for a user by the
// policies' verdict, cached for the connection.
func (h *auth) Publish(cl *mqtt.Client, topic string) bool {
	s, st := live(cl)
	if s == nil {
		return false
	}
	if !st.g.canPublish(topic) {
		h.b.metrics.denied.WithLabelValues("publish").Inc()
		h.b.audit.deny(st.id, cl, "mqtt.publish.deny", "topic", topic)
		return false
	}
	return h.mayPublish(s, cl, topic)
}

// Subscribe checks a SUBSCRIBE filter; a refusal is counted and audited:
// by the policies (the first one under a verdict), or by the topic rules.
func (h *auth) Subscribe(cl *mqtt.Client, filter string) bool {
	s, st := live(cl)
	if s == nil {
		return false
	}
	if st.g.canSubscribe(filter) && h.maySubscribe(s, cl) {
		return true
	}
	if !h.auditSubscribe(s, cl, st.id, filter) {
		h.b.metrics.denied.WithLabelValues("subscribe").Inc()
		h.b.audit.deny(st.id, cl, "mqtt.subscribe.deny", "filter", filter)
	}
	return false
}

// Deliver checks every message on its way to cl: live, retained, queued
// for an away session and resumed.
func (h *auth) Deliver(cl *mqtt.Client, topic string) bool {
	s, st := live(cl)
	if s == nil {
		return false
	}
	if st.g.canReceive(topic) && h.maySubscribe(s, cl) {
		return true
	}
	h.b.metrics.denied.WithLabelValues("deliver").Inc()
	return false
}

// arm ends the connection when its token (or certificate) expires, at
// at (none when zero), instead of when it was armed for before.
func (h *auth) arm(s *session, at time.Time) {
	if at.IsZero() {
		h.expiries.disarm(s)
		return
	}
	h.expiries.arm(s, at.Sub(h.b.opts.Now()))
}

// expire ends s's connection: its token expired.
func (h *auth) expire(s *session) {
	if cl := h.client(s); cl != nil && cl.Conn() != nil && !s.revoked.Load() &&
		h.b.server.DisconnectIdentity(cl.ID, s, packet.MaximumConnectTime, "the token expired", false) {
		h.b.metrics.closed.WithLabelValues("expired").Inc()
	}
}

// disarm stops s's timers: its expiry and its policy verdict's.
func (h *auth) disarm(s *session) {
	h.expiries.disarm(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policyTimer != nil {
		s.policyTimer.Stop()
		s.policyTimer = nil
	}
}

var _ mqtt.Auth = (*auth)(nil)
