package broker

import (
	"container/heap"
	"math"
	"sync"
	"time"
)

// expiries ends the connections whose token (or certificate) expires. The
// sessions' expiry times are kept in a heap, with one runtime timer for the
// earliest: an idle connection holds no timer of its own.
type expiries struct {
	// end ends the session's connection, if it still has one.
	end func(*session)

	mu    sync.Mutex
	base  time.Time // the monotonic origin of expiry.at
	due   expiryHeap
	timer *time.Timer // set for due[0]; created at the first arm
}

// expiry is one armed session's place in the heap.
type expiry struct {
	at  time.Duration // since base
	s   *session
	seq uint32 // the session's armed when pushed
}

func newExpiries(end func(*session)) *expiries {
	return &expiries{end: end, base: time.Now()}
}

// arm ends s's connection after d, instead of when it was armed for.
func (e *expiries) arm(s *session, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.remove(s)
	at := time.Since(e.base)
	if d > math.MaxInt64-at {
		at = math.MaxInt64 // a certificate valid until 9999: never, not at once
	} else {
		at += d
	}
	heap.Push(&e.due, expiry{at: at, s: s, seq: s.armed})
	if e.due[0].s != s {
		return
	}
	if e.timer == nil {
		e.timer = time.AfterFunc(d, e.fire)
	} else {
		e.timer.Reset(d)
	}
}

// disarm forgets s: its connection is not ended when its token expires.
func (e *expiries) disarm(s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.remove(s)
}

// remove takes s out of the heap if it is in it. A pop that fire has
// taken but not yet acted on is cancelled through armed.
func (e *expiries) remove(s *session) {
	s.armed++
	if s.pos > 0 {
		heap.Remove(&e.due, int(s.pos-1))
	}
}

// fire ends the connections that are due and sets the timer for the next.
func (e *expiries) fire() {
	e.mu.Lock()
	now := time.Since(e.base)
	var due []expiry
	for len(e.due) > 0 && e.due[0].at <= now {
		due = append(due, heap.Pop(&e.due).(expiry))
	}
	if len(e.due) > 0 {
		e.timer.Reset(e.due[0].at - now)
	}
	e.mu.Unlock()
	for _, x := range due {
		e.mu.Lock()
		current := x.s.armed == x.seq && x.s.pos == 0
		e.mu.Unlock()
		if current {
			// Each on its own goroutine, as each timer's was: ending one
			// may wait for room in a slow reader's write buffer.
			go e.end(x.s)
		}
	}
}

// expiryHeap orders the armed sessions by expiry; each session knows its
// place (pos, 1 + its index, 0 when out of the heap).
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].s.pos, h[j].s.pos = int32(i+1), int32(j+1)
}

func (h *expiryHeap) Push(x any) {
	e := x.(expiry)
	e.s.pos = int32(len(*h) + 1)
	*h = append(*h, e)
}

func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = expiry{}
	*h = old[:len(old)-1]
	e.s.pos = 0
	return e
}
