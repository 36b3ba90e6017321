//go:build linux

package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// dueParks is the number of parked connections with a deadline.
func (s *server) dueParks() int {
	s.parker.mu.Lock()
	defer s.parker.mu.Unlock()
	return len(s.parker.due)
}

// waitDue waits for n parked connections, due of them with a deadline:
// the park after the bytes a test sent, not the one before they came.
func (s *server) waitDue(t *testing.T, n int64, due int) {
	t.Helper()
	eventually(t, fmt.Sprint(n, " connections parked, ", due, " with a deadline"), func() bool {
		return s.Stats.Parked.Load() == n && s.dueParks() == due
	})
}

// TestAttackParkedPacketWait: a client without keep-alive waits parked
// without a deadline while idle, with its packet wait once it began a
// packet, and the parker ends it then (no reader runs meanwhile); a packet
// completed clears the deadline again, so that the idle connection stays.
func TestAttackParkedPacketWait(t *testing.T) {
	const wait = 500 * time.Millisecond
	s := newServer(t, func(c *Config) { c.PacketWait = wait })
	noKeepAlive := func(pk *packet.Connect) { pk.KeepAlive = 0 }

	idle, _ := s.connect(t, packet.V5, "idle", noKeepAlive)
	idle.Write([]byte{0xC0}) // PINGREQ, begun
	s.waitDue(t, 1, 1)
	idle.Write([]byte{0x00})
	if got := idle.Read(); got.Type() != packet.PINGRESP {
		t.Fatalf("%+v", got)
	}
	s.waitParked(t, 1)
	if n := s.dueParks(); n != 0 {
		t.Fatalf("an idle connection without keep-alive parked with %d deadlines, want none", n)
	}
	time.Sleep(2 * wait)

	c, _ := s.connect(t, packet.V311, "begun", noKeepAlive)
	start := time.Now()
	c.Write(begun)
	s.waitDue(t, 2, 1)
	c.Closed()
	if took := time.Since(start); took < wait || took > 8*wait {
		t.Errorf("a parked packet begun ended after %v; want %v", took, wait)
	}

	// Over TLS: parked outside crypto/tls, with the packet's deadline.
	tc := connectNoKeepAlive(t, s.tlsListen(t), packet.V5, "tls-begun")
	start = time.Now()
	tc.Write(begun)
	s.waitDue(t, 2, 1)
	endedForPacketWait(t, tc)
	if took := time.Since(start); took < wait || took > 8*wait {
		t.Errorf("TLS: a parked packet begun ended after %v; want %v", took, wait)
	}

	idle.Send(&packet.Ping{})
	if got := idle.Read(); got.Type() != packet.PINGRESP {
		t.Fatalf("the idle connection without keep-alive: %+v", got)
	}
}
