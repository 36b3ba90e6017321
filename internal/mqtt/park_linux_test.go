//go:build linux

package mqtt

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// waitParked waits until n connections are parked and no goroutine serves
// a connection.
func (s *server) waitParked(t *testing.T, n int64) {
	t.Helper()
	eventually(t, fmt.Sprint(n, " connections parked, none served by a goroutine"), func() bool {
		return s.Stats.Parked.Load() == n && mqtttest.Serving() == 0
	})
}

// ping sends PINGREQ on c and expects PINGRESP; usable off the test's
// goroutine (it reports with Errorf).
func ping(t *testing.T, c *mqtttest.Conn) bool {
	b, err := packet.Append(nil, c.V, &packet.Ping{})
	if err == nil {
		_, err = c.NC.Write(b)
	}
	var p []byte
	if err == nil {
		p, err = c.ReadRaw()
	}
	if err != nil || len(p) != 2 || packet.Type(p[0]>>4) != packet.PINGRESP {
		t.Errorf("after PINGREQ: % x, %v", p, err)
		return false
	}
	return true
}

// Parked connections hold no goroutine: 100 idle ones add none; woken all
// at once, each is read, answered and parked again; the server's shutdown
// ends them (DISCONNECT 0x8B) and its parker, and leaves no goroutine.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	s := newServer(t, nil)
	const n = 100
	base := runtime.NumGoroutine()
	conns := make([]*mqtttest.Conn, n)
	for i := range conns {
		conns[i], _ = s.connect(t, packet.V5, fmt.Sprint("parked-", i), nil)
	}
	s.waitParked(t, n)
	if extra := runtime.NumGoroutine() - base; extra > n/10 {
		t.Fatalf("%d parked connections hold %d goroutines", n, extra)
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			<-start
			ping(t, c)
		})
	}
	close(start)
	wg.Wait()
	s.waitParked(t, n)

	closed := make(chan struct{})
	go func() {
		s.Close() // waits for every connection to end
		close(closed)
	}()
	for _, c := range conns {
		c.Disconnected(packet.ServerShuttingDown)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the shutdown still waits for parked connections to end") // until their keep-alive
	}
	if got := s.Stats.Parked.Load(); got != 0 {
		t.Fatalf("%d connections parked after the shutdown", got)
	}
	eventually(t, "no goroutine left but the test listener's", func() bool { return runtime.NumGoroutine() < base })
}

// gapConn says ErrWouldWait as its connection does, but only after gap
// has run: bytes gap sends come between the reader's last look at the
// socket and the park's registration.
type gapConn struct {
	net.Conn
	gap func()
}

func (c *gapConn) ReadNow(p []byte) (int, error) {
	n, err := c.Conn.(nowReader).ReadNow(p)
	if err == ErrWouldWait {
		c.gap()
	}
	return n, err
}

func (c *gapConn) Socket() syscall.RawConn { return c.Conn.(socketReader).Socket() }

// Bytes that arrive after ReadNow said ErrWouldWait and before the park
// registered the socket wake the connection at once: the parker reports
// what the socket holds when it is registered (epoll looks at it then,
// and the registration is level-triggered), not only what arrives later.
// A wait for the socket's next change (the Go poller's, without a peek)
// would miss them: the client would wait for its PINGRESP until the
// keep-alive ended the connection.
func TestParkFindsBytesThatCameBefore(t *testing.T) {
	s := newServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := mqtttest.Dial(t, ln.Addr().String(), packet.V5)
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	gc := &gapConn{Conn: Plain(nc)}
	var once sync.Once
	gc.gap = func() {
		once.Do(func() {
			client.NC.Write([]byte{0xc0, 0}) // PINGREQ
			if !inSocket(gc.Socket()) {
				t.Error("the PINGREQ never reached the server's socket")
			}
		})
	}
	go s.ServeConn(gc)
	client.Connect(&packet.Connect{CleanStart: true, ClientID: "gap", KeepAlive: 600,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")})
	if p, ok := client.Read().(*packet.Ping); !ok || !p.Response {
		t.Fatalf("got %+v, want PINGRESP", p)
	}
	s.waitParked(t, 1)
}

// A parked connection's keep-alive ends it as a reader's would: 1.5
// times the keep alive after its last packet, DISCONNECT 0x8D for MQTT 5,
// a plain close for 3.1.1; also when it parks after a connection whose
// deadline is later (the parker, waiting for that one, wakes for the
// earlier), and without ending the later one.
func TestParkedKeepAliveTimeout(t *testing.T) {
	s := newServer(t, nil)
	s.connect(t, packet.V5, "later", func(c *packet.Connect) { c.KeepAlive = 600 })
	s.waitParked(t, 1)
	c5, _ := s.connect(t, packet.V5, "ka5", func(c *packet.Connect) { c.KeepAlive = 1 })
	c3, _ := s.connect(t, packet.V311, "ka3", func(c *packet.Connect) { c.KeepAlive = 1 })
	s.waitParked(t, 3)
	c5.Disconnected(packet.KeepAliveTimeout)
	c3.Closed()
	s.waitParked(t, 1)
	eventually(t, "the sessions ended", func() bool { return s.Client("ka5") == nil && s.Client("ka3") == nil })
	if s.Client("later") == nil {
		t.Fatal("the connection with the later deadline ended too")
	}
}

// Parked connections the server closes end as connections with a reader
// do: a revocation ends the session without its will, a disconnection
// sends the will, a takeover ends the old connection, and a client that
// half-closes its side (EPOLLRDHUP) ends without DISCONNECT, its will
// sent. Each would hold its session for ever if the park missed its end.
func TestParkedConnectionsEnd(t *testing.T) {
	s := newServer(t, nil)
	w, _ := s.connect(t, packet.V5, "w", nil)
	w.Subscribe(1, []packet.ReasonCode{0}, sub("will/#", 0))
	revoked, _ := s.connect(t, packet.V5, "revoked", willOn("will/revoked"))
	kicked, _ := s.connect(t, packet.V5, "kicked", willOn("will/kicked"))
	old, _ := s.connect(t, packet.V5, "taken", nil)
	half, _ := s.connect(t, packet.V5, "half", willOn("will/half"))
	s.waitParked(t, 5)

	s.Disconnect("revoked", packet.NotAuthorized, "revoked", true)
	revoked.Disconnected(packet.NotAuthorized)
	eventually(t, "the revoked session ended", func() bool { return s.Client("revoked") == nil })
	s.Disconnect("kicked", packet.AdministrativeAction, "", false)
	kicked.Disconnected(packet.AdministrativeAction)
	if p := w.Publication(); p.Topic != "will/kicked" {
		t.Fatalf("got %s; want will/kicked and not will/revoked", p.Topic)
	}
	s.connect(t, packet.V5, "taken", nil)
	old.Disconnected(packet.SessionTakenOver)

	half.NC.(*net.TCPConn).CloseWrite()
	if p := w.Publication(); p.Topic != "will/half" {
		t.Fatalf("got %s; want will/half", p.Topic)
	}
	half.Closed()
	s.waitParked(t, 2) // w and the new "taken"
}

// Descriptor numbers are reused at once: connections parked and closed
// (by their clients, and by the server) and new ones opened in quick
// turns are each served, parked and served again. A park's event names
// the park, not the descriptor, and is never taken for a newer
// connection's.
func TestParkedDescriptorsReused(t *testing.T) {
	s := newServer(t, nil)
	const rounds, n = 20, 10
	var conns []*mqtttest.Conn
	for r := range rounds {
		next := make([]*mqtttest.Conn, n)
		for i := range next {
			next[i], _ = s.connect(t, packet.V5, fmt.Sprint("reuse-", r, "-", i), nil)
		}
		for i, c := range conns {
			if r%2 == 0 {
				c.NC.Close()
			} else {
				s.Disconnect(fmt.Sprint("reuse-", r-1, "-", i), packet.AdministrativeAction, "", false)
			}
		}
		for _, c := range next {
			for range 2 { // parked between the two: re-armed
				if !ping(t, c) {
					t.FailNow()
				}
			}
		}
		conns = next
	}
	s.waitParked(t, n)
}

// A parked subscriber under load, for the race detector: publishers
// deliver to it while it is parked (the writer runs without a reader),
// its acknowledgements wake it, its keep-alive timer is re-armed at each
// park, and it is revoked while parked.
func TestParkedConnectionUnderLoad(t *testing.T) {
	s := newServer(t, nil)
	sc, _ := s.connect(t, packet.V5, "sub", func(c *packet.Connect) { c.KeepAlive = 5 })
	sc.Subscribe(1, []packet.ReasonCode{1}, sub("load/#", 1))
	s.waitParked(t, 1)
	const pubs, each = 4, 50
	var wg sync.WaitGroup
	for p := range pubs {
		pc, _ := s.connect(t, packet.V5, fmt.Sprint("pub-", p), nil)
		wg.Go(func() {
			for i := range each {
				b, _ := packet.Append(nil, packet.V5, &packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: fmt.Sprint("load/", p), Payload: []byte("21")})
				if _, err := pc.NC.Write(b); err != nil {
					t.Error(err)
					return
				}
				if b, err := pc.ReadRaw(); err != nil || packet.Type(b[0]>>4) != packet.PUBACK {
					t.Errorf("publisher %d: % x, %v", p, b, err)
					return
				}
			}
		})
	}
	for range pubs * each {
		p := sc.Publication()
		sc.Send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	wg.Wait()
	s.waitParked(t, pubs+1)
	s.Disconnect("sub", packet.NotAuthorized, "revoked", true)
	sc.Disconnected(packet.NotAuthorized)
	s.waitParked(t, pubs)
}
