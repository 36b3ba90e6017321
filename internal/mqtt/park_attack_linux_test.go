//go:build linux

package mqtt

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// An attacker announces a packet and sends its bytes one at a time, each
// after the connection parked again: every byte wakes it, and none may
// move its keep-alive deadline (§3.1.2.10 counts whole packets). The
// trickle would last 40 s; the connection ends 1.5 s after its CONNECT.
func TestAttackParkedTrickleKeepsItsDeadline(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "trickle", func(c *packet.Connect) { c.KeepAlive = 1 })
	c.Write([]byte{0x30, 0xC8, 0x01}) // PUBLISH, 200 bytes to come
	s.waitParked(t, 1)
	defer trickle(c, 200*time.Millisecond, 200)()
	c.Disconnected(packet.KeepAliveTimeout)
	s.waitParked(t, 0)
}

// Ends racing with wakes: parked connections are sent a PINGREQ while the
// server disconnects them, and then while the server shuts down. Each
// park ends once (the race detector; a second end would take the
// server's WaitGroup below zero), none is held (Close returns, no
// session or park is left), and no reader serves a closed connection.
func TestAttackParkEndsRacingWakes(t *testing.T) {
	const n = 50
	s := newServer(t, nil)
	race := func(end func(i int)) []*mqtttest.Conn {
		conns := make([]*mqtttest.Conn, n)
		for i := range conns {
			conns[i], _ = s.connect(t, packet.V5, fmt.Sprint("race-", i), nil)
		}
		s.waitParked(t, n)
		ping, err := packet.Append(nil, packet.V5, &packet.Ping{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(2)
			go func() { defer wg.Done(); c.NC.Write(ping) }()
			go func() { defer wg.Done(); end(i) }()
		}
		wg.Wait()
		return conns
	}
	conns := race(func(i int) { s.Disconnect(fmt.Sprint("race-", i), packet.AdministrativeAction, "", true) })
	for i, c := range conns {
		for {
			b, err := c.ReadRaw()
			if err != nil {
				t.Fatalf("connection %d: %v before DISCONNECT", i, err)
			}
			if packet.Type(b[0]>>4) == packet.DISCONNECT {
				break
			}
		}
		c.NC.Close()
	}
	eventually(t, "the disconnected sessions ended", func() bool {
		for i := range n {
			if s.Client(fmt.Sprint("race-", i)) != nil {
				return false
			}
		}
		return true
	})
	s.waitParked(t, 0)

	var closing sync.Once
	race(func(int) { closing.Do(s.Close) })
	if p := s.Stats.Parked.Load(); p != 0 || mqtttest.Serving() != 0 {
		t.Fatalf("after Close: %d parked, %d served", p, mqtttest.Serving())
	}
}
