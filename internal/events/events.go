// Package events is thingid's in-process event bus: identity changes, disables,
// unlinks and revocations are published here so that resource servers (broker,
// gateway) react at once. It knows nothing of what the events mean.
package events

import (
	"sync"
	"time"
)

// Event says that something happened to an identity.
type Event struct {
	Type    string // "user.create", "thing.disable", "relationship.remove", ...
	Kind    string // kind of the identity concerned: "user", "thing", "group"
	ID      string // its ID
	Actor   string // who did it
	Time    time.Time
	Details map[string]string
	// Local events concern this process only: relays do not carry them to
	// the others (a new identity changes nothing another process decided,
	// and a bulk import creates a million).
	Local bool
}

// Resync is published on a node, never carried to the others, when it may
// have missed other nodes' events (its relay lost and regained its
// connection). Whatever a subscriber keeps because events keep it current —
// a deny set, a cache, compiled policies — it must read again from the store
// (off the bus's goroutine). Kind and ID are empty.
const Resync = "events.resync"

// Bus delivers every published event to every subscriber, in order, synchronously.
// Subscribers must return quickly (hand work to their own goroutine if needed).
type Bus struct {
	mu   sync.RWMutex
	next int
	subs map[int]func(Event)
	// local sees only events published on this node (Publish), never those a
	// relay brought from another node: forwarding those again would loop.
	local map[int]func(Event)
}

// New returns an empty bus.
func New() *Bus { return &Bus{subs: map[int]func(Event){}, local: map[int]func(Event){}} }

// Subscribe registers fn for every later event and returns a function that removes it.
func (b *Bus) Subscribe(fn func(Event)) (cancel func()) { return b.add(b.subs, fn) }

// subscribeLocal registers fn for every later event published on this node.
func (b *Bus) subscribeLocal(fn func(Event)) (cancel func()) { return b.add(b.local, fn) }

func (b *Bus) add(m map[int]func(Event), fn func(Event)) (cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	m[id] = fn
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(m, id)
	}
}

// Publish delivers e to every subscriber (and, through a Relay, to the other
// nodes). A nil bus drops events.
func (b *Bus) Publish(e Event) { b.publish(e, true) }

// publish delivers e to every subscriber; local says e happened on this node.
func (b *Bus) publish(e Event, local bool) {
	if b == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, fn := range b.subs {
		fn(e)
	}
	if local {
		for _, fn := range b.local {
			fn(e)
		}
	}
}
