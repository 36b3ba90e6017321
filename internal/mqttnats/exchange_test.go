package mqttnats

import (
	"strconv"
	"testing"
	"time"
)

// TestRepeatsBounded: a node remembers an exchange it took for the
// window, and at most maxRepeats of them, forgetting the oldest first.
func TestRepeatsBounded(t *testing.T) {
	rs := newRepeats(time.Minute)
	if rs.has("e.1") || rs.seen("e.1") {
		t.Fatal("an exchange never taken is known")
	}
	if !rs.has("e.1") || !rs.seen("e.1") {
		t.Fatal("an exchange taken is not known")
	}
	// Out of the window: as if taken over a minute ago.
	rs.at["e.1"] = time.Now().Add(-2 * time.Minute)
	if rs.has("e.1") {
		t.Fatal("an exchange out of the window is known")
	}
	if len(rs.at) != 0 || len(rs.order) != 0 {
		t.Fatalf("%d exchanges kept, %d in order, want none", len(rs.at), len(rs.order))
	}
	for i := range maxRepeats + 1 {
		rs.seen("e." + strconv.Itoa(i))
	}
	if rs.has("e.0") || !rs.has("e.1") || !rs.has("e."+strconv.Itoa(maxRepeats)) {
		t.Fatal("past maxRepeats, not the oldest forgotten first")
	}
	if len(rs.at) > maxRepeats {
		t.Fatalf("%d exchanges kept, more than %d", len(rs.at), maxRepeats)
	}
}
