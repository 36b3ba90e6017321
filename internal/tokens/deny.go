package tokens

import (
	"container/heap"
	"sync"
	"time"
)

// EventGrantRevoke is the event oauth publishes when a grant is revoked; it is
// the contract between oauth and every Verifier:
//
//	events.Event{
//		Type:    "grant.revoke",
//		Kind:    "grant",
//		ID:      "<grant id: the gid claim of its tokens>",
//		Details: map[string]string{"exp": "<latest exp of the grant's access tokens, unix seconds>"},
//	}
//
// From then on every Verifier refuses tokens of that grant (ErrRevoked) until
// exp plus its leeway, and then forgets the grant: memory is bounded by token
// lifetimes. Without a readable "exp" the grant is refused for
// MaxTokenLifetime after the event's Time, which covers every token issued
// before it. Revoking a grant again with a later exp extends the refusal.
const EventGrantRevoke = "grant.revoke"

// denySet holds revoked grant ids until their last token expires.
type denySet struct {
	mu    sync.RWMutex
	until map[string]time.Time
	queue expiries // min-heap by until, so forgetting is O(log n)
}

type expiry struct {
	gid   string
	until time.Time
}

// add refuses gid until `until`, or longer if it already was.
func (d *denySet) add(gid string, until, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.until == nil {
		d.until = map[string]time.Time{}
	}
	d.forget(now)
	if cur, ok := d.until[gid]; ok && !until.After(cur) {
		return
	}
	d.until[gid] = until
	heap.Push(&d.queue, expiry{gid, until})
}

// denied reports whether gid is revoked at now.
func (d *denySet) denied(gid string, now time.Time) bool {
	d.mu.RLock()
	until, ok := d.until[gid]
	stale := len(d.queue) > 0 && !now.Before(d.queue[0].until)
	d.mu.RUnlock()
	if stale {
		d.mu.Lock()
		d.forget(now)
		d.mu.Unlock()
	}
	return ok && now.Before(until)
}

// forget drops the grants whose tokens have all expired; d.mu is held.
func (d *denySet) forget(now time.Time) {
	for len(d.queue) > 0 && !now.Before(d.queue[0].until) {
		e := heap.Pop(&d.queue).(expiry)
		// A later revocation of the same grant pushed a later entry.
		if d.until[e.gid].Equal(e.until) {
			delete(d.until, e.gid)
		}
	}
}

type expiries []expiry

func (q expiries) Len() int           { return len(q) }
func (q expiries) Less(i, j int) bool { return q[i].until.Before(q[j].until) }
func (q expiries) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiries) Push(x any)        { *q = append(*q, x.(expiry)) }
func (q *expiries) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
