package broker

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Expiries armed, moved and disarmed from many goroutines at once (a
// re-authentication moves one, a takeover or a revocation disarms it),
// many at the same instant, past, present, far future and beyond the
// heap's clock, or a few milliseconds later (the timer set again for the
// next once the earliest was ended): a session whose last arm is due is ended; one never armed
// for a due time is never ended; none is ended more often than it was
// armed due; the heap keeps exactly the sessions armed for later, each at
// its place.
func TestAttackExpiriesConcurrent(t *testing.T) {
	var mu sync.Mutex
	ends := map[*session]int{}
	ended := make(chan *session, 1000)
	e := newExpiries(func(s *session) {
		mu.Lock()
		ends[s]++
		mu.Unlock()
		ended <- s
	})
	const workers, each = 8, 50
	ops := []time.Duration{-time.Second, 0, 10 * time.Millisecond, 30 * time.Millisecond, time.Hour, math.MaxInt64, -1} // -1: disarm
	type plan struct {
		s      *session
		dueArm int  // arms due within the test
		due    bool // the last op is an arm due within the test
		later  bool // the last op is an arm for an hour or more
	}
	plans := make([][]plan, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 16))
			for range each {
				p := plan{s: &session{}}
				for range 1 + r.IntN(6) {
					switch d := ops[r.IntN(len(ops))]; {
					case d == -1:
						e.disarm(p.s)
						p.due, p.later = false, false
					default:
						e.arm(p.s, d)
						p.due, p.later = d < time.Hour, d >= time.Hour
						if p.due {
							p.dueArm++
						}
					}
				}
				plans[w] = append(plans[w], p)
			}
		}()
	}
	wg.Wait()
	var mustEnd, later int
	for _, ps := range plans {
		for _, p := range ps {
			if p.due {
				mustEnd++
			}
			if p.later {
				later++
			}
		}
	}
	for seen := map[*session]bool{}; len(seen) < mustEnd; {
		select {
		case s := <-ended:
			for _, ps := range plans {
				for _, p := range ps {
					if p.s == s && p.due {
						seen[s] = true
					}
				}
			}
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d sessions due were ended", len(seen), mustEnd)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	for _, ps := range plans {
		for _, p := range ps {
			if n := ends[p.s]; n > p.dueArm {
				t.Errorf("a session armed due %d times was ended %d times", p.dueArm, n)
			}
			if in := p.s.pos > 0 && e.due[p.s.pos-1].s == p.s; in != p.later {
				t.Errorf("a session armed for later: %v; in the heap at its place: %v", p.later, in)
			}
		}
	}
	if len(e.due) != later {
		t.Errorf("%d sessions in the heap, want the %d armed for later", len(e.due), later)
	}
}
