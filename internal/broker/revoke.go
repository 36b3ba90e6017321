package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// eventQueue hands events to the broker's worker: the bus (and the
// policies' watch) call their subscribers synchronously and must not wait
// for connections to close or be decided, and no revocation may be
// dropped, so the queue is unbounded. It holds the work each event needs.
type eventQueue struct {
	mu     sync.Mutex
	q      []func()
	signal chan struct{}
	stops  []func()
	done   chan struct{}
}

func (eq *eventQueue) push(work func()) {
	eq.mu.Lock()
	eq.q = append(eq.q, work)
	eq.mu.Unlock()
	select {
	case eq.signal <- struct{}{}:
	default:
	}
}

// follow starts reacting to revocations and identity changes on bus, and
// to the changes of policies.
func (h *auth) follow(ctx context.Context, bus *events.Bus, policies Policies) {
	if bus == nil && policies == nil {
		return
	}
	eq := &eventQueue{signal: make(chan struct{}, 1), done: make(chan struct{})}
	h.events = eq
	if bus != nil {
		eq.stops = append(eq.stops, bus.Subscribe(func(e events.Event) {
			if relevant(e) {
				eq.push(func() { h.handle(ctx, e) })
			}
		}))
	}
	if policies != nil {
		eq.stops = append(eq.stops, policies.Watch(func(e events.Event) {
			eq.push(func() { h.watchPolicies(e) })
		}))
	}
	go func() {
		defer close(eq.done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-eq.signal:
			}
			eq.mu.Lock()
			batch := eq.q
			eq.q = nil
			eq.mu.Unlock()
			for _, work := range batch {
				work()
			}
		}
	}()
}

func (h *auth) stopFollowing() {
	if h.events != nil {
		for _, stop := range h.events.stops {
			stop()
		}
		<-h.events.done
	}
}

func relevant(e events.Event) bool {
	switch e.Type {
	case tokens.EventGrantRevoke, certauth.EventCertRevoke,
		"thing.disable", "thing.delete", "thing.update", "user.disable", "user.delete",
		"relationship.add", "relationship.remove", "group.update", "group.delete", events.Resync:
		return true
	}
	return false
}

// handle applies one event to every session it concerns: revocations end
// the connection and discard the session; changes recompile the grants.
func (h *auth) handle(ctx context.Context, e events.Event) {
	owner := e.Details["relation"] == string(store.RelOwner) && e.Details["fromKind"] == string(store.KindUser)
	h.b.server.Each(func(cl *mqtt.Client) bool {
		s := sessionOf(cl)
		if s == nil {
			return true
		}
		id := s.state.Load().id
		switch e.Type {
		case tokens.EventGrantRevoke:
			if id.Grant == e.ID {
				h.end(s, "grant_revoked")
			}
		case certauth.EventCertRevoke:
			if id.Cert != "" && id.Cert == e.Details["fingerprint"] {
				h.end(s, "certificate_revoked")
			}
		case "thing.disable", "thing.delete":
			if id.Thing == e.ID {
				h.end(s, "thing_disabled")
			}
		case "user.disable", "user.delete":
			if id.user() == e.ID {
				h.end(s, "user_disabled")
			}
		case "thing.update":
			if id.Thing == e.ID {
				h.refresh(ctx, s)
			}
		case "relationship.remove":
			switch {
			case owner && id.Thing == e.ID:
				h.end(s, "owner_unlinked") // the device was unlinked, sold or lost
			case owner && id.Kind == kindUser && id.Subject == e.Details["fromId"]:
				h.refresh(ctx, s)
			}
		case "relationship.add":
			if owner && (id.Thing == e.ID || (id.Kind == kindUser && id.Subject == e.Details["fromId"])) {
				h.refresh(ctx, s)
			}
		case events.Resync:
			h.refresh(ctx, s) // a disable or unlink may have been missed
		case "group.update", "group.delete":
			if id.Admin && id.user() != "" {
				h.refresh(ctx, s) // an administrator may have been removed
			}
		}
		return true
	})
	h.b.recheckTaps(ctx, e)
}

// end closes a revoked session's connection (MQTT 5: DISCONNECT 0x87) and
// discards the session with its queued messages: what was meant for a
// revoked identity is not kept for it. Its will is not published.
func (h *auth) end(s *session, reason string) {
	h.endWith(s, reason, packet.NotAuthorized, "session ended: "+reason, false)
}

// endWith is end with the MQTT 5 DISCONNECT reason code and string; label
// names the reason in metrics and the log. The core closes an MQTT 3.1.1
// connection without a DISCONNECT, which 3.1.1 lets only clients send.
// The session answers nothing once revoked; async (a session's lock is
// held) ends its connection after the caller's answer.
func (h *auth) endWith(s *session, label string, code packet.ReasonCode, reason string, async bool) {
	if !s.revoked.CompareAndSwap(false, true) {
		return
	}
	h.disarm(s)
	cid := s.state.Load().id.ClientIdentifier
	h.b.metrics.closed.WithLabelValues(label).Inc()
	h.b.log.Info("mqtt: session ended", "client", cid, "reason", label)
	discard := func() {
		h.b.server.DisconnectIdentity(cid, s, code, reason, true)
	}
	if async {
		go discard()
	} else {
		discard()
	}
}

// refresh reads the identity again and recompiles its grants; an identity
// that is no longer active ends.
func (h *auth) refresh(ctx context.Context, s *session) {
	if err := h.resolveAgain(ctx, s); err != nil {
		if errors.Is(err, errInactive) || errors.Is(err, errForeignGrant) {
			h.end(s, "inactive")
		} else {
			h.b.log.Error("mqtt: refreshing an identity failed; its grants stay as they were", "client", s.state.Load().id.ClientIdentifier, "err", err)
		}
	}
}

// resolveAgain reads s's identity again from the store and compiles its
// grants anew; errInactive or errForeignGrant: it no longer stands.
func (h *auth) resolveAgain(ctx context.Context, s *session) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cur := s.state.Load()
	id := *cur.id
	id.Owned = nil
	if err := h.b.resolver.resolve(ctx, &id); err != nil {
		return err
	}
	// A re-authentication meanwhile resolved it later still: keep that one.
	s.state.CompareAndSwap(cur, &sessionState{id: &id, g: compile(h.b.opts.Rules, &id)})
	return nil
}
