package broker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// eventQueue hands bus events to the broker's worker: the bus calls its
// subscribers synchronously and must not wait for connections to close, and
// no revocation may be dropped, so the queue is unbounded.
type eventQueue struct {
	mu     sync.Mutex
	q      []events.Event
	signal chan struct{}
	cancel func()
	done   chan struct{}
}

// follow starts reacting to revocations and identity changes on bus.
func (h *hook) follow(ctx context.Context, bus *events.Bus) {
	if bus == nil {
		return
	}
	eq := &eventQueue{signal: make(chan struct{}, 1), done: make(chan struct{})}
	h.events = eq
	eq.cancel = bus.Subscribe(func(e events.Event) {
		if !relevant(e) {
			return
		}
		eq.mu.Lock()
		eq.q = append(eq.q, e)
		eq.mu.Unlock()
		select {
		case eq.signal <- struct{}{}:
		default:
		}
	})
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
			for _, e := range batch {
				h.handle(ctx, e)
			}
		}
	}()
}

func (h *hook) stopFollowing() {
	if h.events != nil {
		h.events.cancel()
		<-h.events.done
	}
}

func relevant(e events.Event) bool {
	switch e.Type {
	case tokens.EventGrantRevoke, certauth.EventCertRevoke,
		"thing.disable", "thing.delete", "thing.update", "user.disable", "user.delete",
		"relationship.add", "relationship.remove", "group.update", "group.delete":
		return true
	}
	return false
}

// handle applies one event to every session it concerns: revocations end
// the connection and discard the session; changes recompile the grants.
func (h *hook) handle(ctx context.Context, e events.Event) {
	owner := e.Details["relation"] == string(store.RelOwner) && e.Details["fromKind"] == string(store.KindUser)
	h.sessions.Range(func(_, v any) bool {
		s := v.(*session)
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
		case "group.update", "group.delete":
			if id.Admin && id.user() != "" {
				h.refresh(ctx, s) // an administrator may have been removed
			}
		}
		return true
	})
}

// end closes a revoked session's connection (MQTT 5: DISCONNECT 0x87) and
// discards the session with its queued messages: what was meant for a
// revoked identity is not kept for it. Its will is not published.
func (h *hook) end(s *session, reason string) { h.endWith(s, reason, packets.ErrNotAuthorized) }

// endWith is end with the DISCONNECT reason code.
func (h *hook) endWith(s *session, reason string, code packets.Code) {
	if !s.revoked.CompareAndSwap(false, true) {
		return
	}
	s.disarm()
	h.b.metrics.closed.WithLabelValues(reason).Inc()
	h.b.log.Info("mqtt: session revoked", "client", s.cl.ID, "reason", reason)
	cl := s.cl
	if cl.Closed() {
		h.discard(s)
		return
	}
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	h.b.server.DisconnectClient(cl, packets.Code{Code: code.Code, Reason: "session ended: " + reason})
	// OnDisconnect discards the session once the connection has ended.
}

// discard deletes a session: subscriptions, queued messages and its record.
func (h *hook) discard(s *session) {
	if !s.gone.CompareAndSwap(false, true) {
		return
	}
	cl := s.cl
	defer h.sessions.Delete(cl)
	if cur, ok := h.b.server.Clients.Get(cl.ID); ok && cur != cl {
		return // taken over: the client id is another session's now
	}
	cl.ClearInflights()
	h.b.server.UnsubscribeClient(cl)
	h.b.server.Clients.Delete(cl.ID)
	h.b.store.forget(cl)
}

// refresh reads the identity again and recompiles its grants; an identity
// that is no longer active ends.
func (h *hook) refresh(ctx context.Context, s *session) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cur := s.state.Load()
	id := *cur.id
	id.Owned = nil
	if err := h.b.resolver.resolve(ctx, &id); err != nil {
		if errors.Is(err, errInactive) || errors.Is(err, errForeignGrant) {
			h.end(s, "inactive")
		} else {
			h.b.log.Error("mqtt: refreshing an identity failed; its grants stay as they were", "client", s.cl.ID, "err", err)
		}
		return
	}
	// A re-authentication meanwhile resolved it later still: keep that one.
	s.state.CompareAndSwap(cur, &sessionState{id: &id, g: compile(h.b.opts.Rules, &id)})
}
