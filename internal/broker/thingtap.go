package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
)

// thingTaps are the subscriptions things hold through other doors
// (SubscribeAsThing: the CoAP gateway's observers). The events that
// re-check MQTT connections (handle, revoke.go) re-check them too.
type thingTaps struct {
	mu  sync.Mutex
	set map[*thingTap]struct{}
}

// thingTap is one such subscription.
type thingTap struct {
	// id is the thing as last resolved; only the event worker replaces it.
	id     *Identity
	filter string
	g      atomic.Pointer[grants] // what deliveries are checked against
	untap  func()
	ended  func(error)
}

func (ts *thingTaps) add(t *thingTap) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.set == nil {
		ts.set = map[*thingTap]struct{}{}
	}
	ts.set[t] = struct{}{}
}

// take removes t, reporting whether it was there: whoever takes it ends it.
func (ts *thingTaps) take(t *thingTap) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	_, ok := ts.set[t]
	delete(ts.set, t)
	return ok
}

// remove ends t for its holder (stop).
func (ts *thingTaps) remove(t *thingTap) {
	if ts.take(t) {
		t.untap()
	}
}

func (ts *thingTaps) all() []*thingTap {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]*thingTap, 0, len(ts.set))
	for t := range ts.set {
		out = append(out, t)
	}
	return out
}

// recheckTaps applies e to the things' subscriptions through other doors
// as handle applies it to things' MQTT connections: a revocation, a
// disable or an unlink ends them; a change of the thing, a new owner or a
// resync reads the thing again (refreshTap).
func (b *Broker) recheckTaps(ctx context.Context, e events.Event) {
	owner := e.Details["relation"] == string(store.RelOwner) && e.Details["fromKind"] == string(store.KindUser)
	for _, t := range b.taps.all() {
		id := t.id
		switch {
		case e.Type == certauth.EventCertRevoke && id.Cert != "" && id.Cert == e.Details["fingerprint"]:
			b.endTap(t, fmt.Errorf("%w: its certificate was revoked", ErrInactive))
		case (e.Type == "thing.disable" || e.Type == "thing.delete") && id.Thing == e.ID:
			b.endTap(t, fmt.Errorf("%w: thing %s is disabled or deleted", ErrInactive, id.Thing))
		case e.Type == "relationship.remove" && owner && id.Thing == e.ID:
			b.endTap(t, fmt.Errorf("%w: thing %s was unlinked from its owner", ErrInactive, id.Thing))
		case e.Type == "thing.update" && id.Thing == e.ID, e.Type == "relationship.add" && owner && id.Thing == e.ID,
			e.Type == events.Resync:
			b.refreshTap(ctx, t)
		}
	}
}

// refreshTap reads t's thing again and recompiles its rules: a thing no
// longer active, or whose rules no longer give it t's filter (its model or
// owner changed what ${thing.model} or ${owner.id} names), loses the
// subscription. A store that does not answer leaves it as it was, as it
// leaves an MQTT connection's grants.
func (b *Broker) refreshTap(ctx context.Context, t *thingTap) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id := *t.id
	id.Owned = nil
	err := b.resolver.resolve(ctx, &id)
	switch {
	case errors.Is(err, errInactive):
		b.endTap(t, err)
		return
	case err != nil:
		b.log.Error("mqtt: refreshing a thing's subscription through another door failed; its rules stay as they were",
			"thing", id.Thing, "filter", t.filter, "err", err)
		return
	}
	g := compile(b.opts.Rules, &id)
	if !g.canSubscribe(t.filter) {
		b.metrics.denied.WithLabelValues("subscribe").Inc()
		b.endTap(t, fmt.Errorf("%w: %q", ErrNotAllowed, t.filter))
		return
	}
	t.id = &id
	t.g.Store(g)
}

// endTap ends t, unless its holder stopped it first, and tells the holder
// why.
func (b *Broker) endTap(t *thingTap, why error) {
	if !b.taps.take(t) {
		return
	}
	t.untap()
	b.log.Info("mqtt: a thing's subscription through another door ended", "thing", t.id.Thing, "filter", t.filter, "reason", why.Error())
	if t.ended != nil {
		t.ended(why)
	}
}
