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
}

// Bus delivers every published event to every subscriber, in order, synchronously.
// Subscribers must return quickly (hand work to their own goroutine if needed).
type Bus struct {
	mu   sync.RWMutex
	next int
	subs map[int]func(Event)
}

// New returns an empty bus.
func New() *Bus { return &Bus{subs: map[int]func(Event){}} }

// Subscribe registers fn for every later event and returns a function that removes it.
func (b *Bus) Subscribe(fn func(Event)) (cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	b.subs[id] = fn
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
	}
}

// Publish delivers e to every subscriber. A nil bus drops events.
func (b *Bus) Publish(e Event) {
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
}
