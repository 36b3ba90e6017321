package broker

import (
	"math"
	"testing"
	"time"
)

// TestExpiries: a session is ended once it is due, and not when it was
// disarmed or armed again for later before it was due, also when it was
// due at once; many sessions keep their order.
func TestExpiries(t *testing.T) {
	ended := make(chan *session, 100)
	e := newExpiries(func(s *session) { ended <- s })
	later := time.Hour
	var now []*session
	for range 20 {
		s := &session{}
		e.arm(s, -time.Second) // expired already: ended at once
		now = append(now, s)
	}
	disarmed, rearmed, waiting, never := &session{}, &session{}, &session{}, &session{}
	e.arm(waiting, later)
	e.arm(never, math.MaxInt64) // at.Sub(now) of a far expiry saturates
	e.arm(disarmed, 0)
	e.disarm(disarmed)
	e.arm(rearmed, 0)
	e.arm(rearmed, later)
	// A session armed after the others and due at once: the disarmed one
	// was due before it.
	last := &session{}
	e.arm(last, 0)
	got := map[*session]bool{}
	for len(got) < len(now)+1 {
		select {
		case s := <-ended:
			if got[s] {
				t.Fatal("a session was ended twice")
			}
			got[s] = true
		case <-time.After(time.Minute):
			t.Fatal("the sessions due were not ended")
		}
	}
	for _, s := range append(now, last) {
		if !got[s] {
			t.Error("a session due was not ended")
		}
	}
	for name, s := range map[string]*session{"disarmed": disarmed, "armed again for later": rearmed, "armed for later": waiting, "armed for the longest duration": never} {
		if got[s] {
			t.Errorf("the session %s was ended", name)
		}
	}
	if len(e.due) != 3 {
		t.Errorf("%d sessions wait in the heap, want the 3 armed for later", len(e.due))
	}
	e.disarm(rearmed)
	e.disarm(waiting)
	e.disarm(never)
	if len(e.due) != 0 || rearmed.pos != 0 || waiting.pos != 0 || never.pos != 0 {
		t.Error("disarmed sessions are still in the heap")
	}
}
