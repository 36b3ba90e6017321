package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/policy"
)

// Policies decides what a user may do through a thing: the households'
// rules and the platform's, on the server's clock (*household.Service).
type Policies interface {
	Decide(ctx context.Context, req policy.Request) (policy.Decision, error)
	// Watch calls fn with each change once Decide answers by it; fn must
	// not block.
	Watch(fn func(events.Event)) (stop func())
}

// verdict is what the policies say of a connection of a thing acting for a
// user: whether it may publish and subscribe (every topic the topic rules
// give it, or none), decided at CONNECT and again when its time is up, when
// a change concerns it, and after a re-authentication.
type verdict struct {
	publish, subscribe policy.Decision
	// mayPublish, maySubscribe are the door's answers (allows).
	mayPublish, maySubscribe bool
	// until is when the clock may change the answers, on the broker's
	// clock; zero: only a change can.
	until time.Time
	// audited: the first refusal of a publish, and of a subscription, under
	// this verdict is in the audit log; the ones after it only counted.
	auditedPublish, auditedSubscribe atomic.Bool
}

// undecided is the verdict of a session restored from disk: nothing is
// delivered to it before the policies are asked.
var undecided = &verdict{until: time.Unix(0, 1)}

// stale reports whether the clock has reached v's end.
func (v *verdict) stale(now time.Time) bool { return !v.until.IsZero() && !now.Before(v.until) }

// allows is whether d lets a connection act: a thing of a household as its
// rules say; a thing in no household only for its owner, and unless a
// platform policy refuses it (a refusal by default is no refusal there: the
// households' rules do not speak of such a thing).
func allows(d policy.Decision, owner bool) bool {
	switch {
	case d.Household != "":
		return d.Allowed
	case !owner:
		return false
	}
	return d.Allowed || d.Rule == ""
}

// governed reports whether id's connections are decided by the policies: a
// thing acting for a user other than itself.
func (h *auth) governed(id *Identity) bool {
	return h.b.opts.Policies != nil && id.Kind == kindThing && id.user() != ""
}

// decide asks the policies about id's publishing and subscribing now.
func (h *auth) decide(ctx context.Context, id *Identity) (*verdict, error) {
	v := &verdict{}
	owner := id.Owner == id.user()
	for _, q := range []struct {
		action policy.Action
		d      *policy.Decision
		may    *bool
	}{{policy.Publish, &v.publish, &v.mayPublish}, {policy.Subscribe, &v.subscribe, &v.maySubscribe}} {
		d, err := h.b.opts.Policies.Decide(ctx, policy.Request{UserID: id.user(), ThingID: id.Thing, Action: q.action, Door: "broker"})
		if err != nil {
			return nil, err
		}
		*q.d, *q.may = d, allows(d, owner)
		if !owner && d.Household == "" {
			q.d.Reason = "the thing is in no household of this user, who does not own it"
		}
		// The decider's clock and the broker's need not be one: the time
		// the decision holds for is carried over, not the instant.
		if !d.Until.IsZero() {
			until := h.b.opts.Now().Add(d.Until.Sub(d.Local))
			if v.until.IsZero() || until.Before(v.until) {
				v.until = until
			}
		}
	}
	return v, nil
}

// refusal is the decision a refused connection reads: the subscription's,
// unless only publishing was refused.
func (v *verdict) refusal() policy.Decision {
	if !v.maySubscribe {
		return v.subscribe
	}
	return v.publish
}

// ends reports whether v ends a connection that holds subscriptions: when
// it may neither publish nor subscribe, or may no longer subscribe while it
// holds subscriptions.
func (v *verdict) ends(subscriptions int) bool {
	return !v.mayPublish && !v.maySubscribe || !v.maySubscribe && subscriptions > 0
}

// admitPolicy decides a CONNECT (or a re-authentication) of a governed
// identity: it is refused when the verdict ends it, or when it sets a will
// it may not publish; a refusal is audited as action.
func (h *auth) admitPolicy(ctx context.Context, cl *mqtt.Client, id *Identity, will bool, subscriptions int, action string) (*verdict, *refusal) {
	v, err := h.decide(ctx, id)
	if err != nil {
		h.b.log.Error("mqtt: asking the policies failed", "client", cl.ID, "err", err)
		return nil, refuse(packet.ServerUnavailable, "error", "the policies could not be asked; try again")
	}
	if v.ends(subscriptions) || will && !v.mayPublish {
		d := v.refusal()
		h.b.audit.deny(id, cl, action, policyDetail(d, "reason", "policy")...)
		return nil, refuse(packet.NotAuthorized, "policy", d.Reason)
	}
	return v, nil
}

func policyDetail(d policy.Decision, kv ...string) []string {
	return append(kv, "rule", d.Rule, "decision", d.Reason, "household", d.Household)
}

// ended is the verdict of a session the policies ended.
var ended = &verdict{}

// current is s's verdict, decided again first when its time is up; nil for
// a session the policies do not govern. It is asked under cl's lock, so a
// connection the new verdict ends is ended after the answer.
func (h *auth) current(s *session, cl *mqtt.Client) *verdict {
	v := s.policy.Load()
	if v == nil || !v.stale(h.b.opts.Now()) {
		return v
	}
	h.redecide(s, cl, true, true)
	if s.revoked.Load() {
		return ended
	}
	return s.policy.Load()
}

// redecide asks the policies again about s's connection (cl). A connection
// they no longer let stream ends: when it may neither publish nor
// subscribe, or may no longer subscribe while it holds subscriptions. Its
// MQTT 5 DISCONNECT says why: 0x87 Not authorized when the clock ended it
// (byClock), 0x98 Administrative action when a guardian's or an
// administrator's change did, with the decision's reason. A connection
// that may no longer publish loses its will: it is a publish the verdict
// refuses. async: cl's lock is held, the connection is ended afterwards.
func (h *auth) redecide(s *session, cl *mqtt.Client, byClock, async bool) {
	s.deciding.Lock()
	defer s.deciding.Unlock()
	old := s.policy.Load()
	if old == nil || s.revoked.Load() {
		return
	}
	if byClock && !old.stale(h.b.opts.Now()) {
		return // decided meanwhile
	}
	code := packet.AdministrativeAction
	if byClock {
		code = packet.NotAuthorized
	}
	st := s.state.Load()
	ctx, cancel := context.WithTimeout(h.ctx, h.b.opts.Limits.ConnectTimeout)
	defer cancel()
	v, err := h.decide(ctx, st.id)
	if err != nil {
		// Failing closed: without an answer the connection cannot go on.
		h.b.log.Error("mqtt: deciding a connection again by the policies failed; ending it", "client", cl.ID, "err", err)
		h.endWith(s, "policy_error", packet.UnspecifiedError, "the policies could not be asked; reconnect", async)
		return
	}
	s.policy.Store(v)
	if v.ends(cl.Subscriptions()) {
		d := v.refusal()
		h.b.audit.deny(st.id, cl, "mqtt.policy.disconnect", policyDetail(d)...)
		h.endWith(s, "policy", code, d.Reason, async)
		return
	}
	h.armPolicy(s, v.until)
}

// armPolicy decides s again at until (zero: never by the clock). The
// timer's work runs on the broker's workers, so that the connections whose
// window closes at the same minute are decided a few at a time.
func (h *auth) armPolicy(s *session, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policyTimer != nil {
		s.policyTimer.Stop()
		s.policyTimer = nil
	}
	if until.IsZero() {
		return
	}
	s.policyTimer = time.AfterFunc(until.Sub(h.b.opts.Now()), func() {
		if h.ctx.Err() != nil {
			return
		}
		h.b.workers.run(func() {
			if cl := h.client(s); cl != nil {
				h.redecide(s, cl, true, false)
			}
		})
	})
}

// mayPublish checks a PUBLISH of s against its verdict (true for a session
// the policies do not govern); the first refusal under a verdict is audited.
func (h *auth) mayPublish(s *session, cl *mqtt.Client, topic string) bool {
	v := h.current(s, cl)
	if v == nil || v.mayPublish {
		return true
	}
	if v == ended {
		return false
	}
	h.b.metrics.denied.WithLabelValues("policy_publish").Inc()
	if !v.auditedPublish.Swap(true) {
		h.b.audit.deny(s.state.Load().id, cl, "mqtt.publish.deny", policyDetail(v.publish, "topic", topic)...)
	}
	return false
}

// maySubscribe checks a SUBSCRIBE filter of s, or a delivery to it,
// against its verdict (true for a session the policies do not govern).
func (h *auth) maySubscribe(s *session, cl *mqtt.Client) bool {
	v := h.current(s, cl)
	return v == nil || v.maySubscribe
}

// auditSubscribe audits the first subscription the verdict refused.
func (h *auth) auditSubscribe(s *session, cl *mqtt.Client, id *Identity, filter string) bool {
	v := s.policy.Load()
	if v == nil || v.maySubscribe {
		return false
	}
	h.b.metrics.denied.WithLabelValues("policy_subscribe").Inc()
	if !v.auditedSubscribe.Swap(true) {
		h.b.audit.deny(id, cl, "mqtt.subscribe.deny", policyDetail(v.subscribe, "filter", filter)...)
	}
	return true
}

// watchPolicies decides again the connections a change may concern: every
// one for the platform's policies; for a household's, those of its things
// and of the thing it placed or took out; for a thing's or a user's (a
// model, an owner), theirs. They are decided on the broker's workers, a few
// at a time, and all before the next change.
func (h *auth) watchPolicies(e events.Event) {
	var wg sync.WaitGroup
	h.b.server.Each(func(cl *mqtt.Client) bool {
		s := sessionOf(cl)
		if s == nil {
			return true
		}
		v := s.policy.Load()
		if v == nil {
			return true
		}
		id := s.state.Load().id
		if e.Type == events.Resync || e.Kind == "policy" || e.ID == id.Thing || e.ID == id.user() || e.Details["thing"] == id.Thing ||
			e.ID == v.publish.Household || e.ID == v.subscribe.Household {
			wg.Go(func() { h.b.workers.run(func() { h.redecide(s, cl, false, false) }) })
		}
		return true
	})
	wg.Wait()
}
