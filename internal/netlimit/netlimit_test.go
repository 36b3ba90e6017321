package netlimit

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// pipeListener hands out the server ends of connections made by dial.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn, 100), done: make(chan struct{})}
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}
func (p *pipeListener) Close() error   { close(p.done); return nil }
func (p *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// fromAddr is a pipe end whose peer is addr.
type fromAddr struct {
	net.Conn
	addr net.Addr
}

func (c fromAddr) RemoteAddr() net.Addr { return c.addr }

// dial makes a connection from ip and returns the client's end.
func (p *pipeListener) dial(ip string) net.Conn {
	client, server := net.Pipe()
	p.conns <- fromAddr{server, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
	return client
}

func newLimiter(t *testing.T, max int) (*Limiter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := New(Options{Max: max, Log: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// The rules, tried in order: each step opens a connection from an address
// and says whether the listener hands it on.
func TestAdmission(t *testing.T) {
	type step struct {
		from  string
		admit bool
		close int // close the admitted connection with this index first (-1: none)
	}
	for name, tc := range map[string]struct {
		max, perAddress int
		exempt          string
		steps           []step
	}{
		"per-address cap": {max: 100, perAddress: 2, steps: []step{
			{"10.0.0.1", true, -1}, {"10.0.0.1", true, -1}, {"10.0.0.1", false, -1},
			{"10.0.0.2", true, -1}, // another address is not counted with it
		}},
		"a closed connection frees its slot": {max: 100, perAddress: 1, steps: []step{
			{"10.0.0.1", true, -1}, {"10.0.0.1", false, -1}, {"10.0.0.1", true, 0},
		}},
		"IPv6 counts by /64": {max: 100, perAddress: 1, steps: []step{
			{"2001:db8::1", true, -1}, {"2001:db8::2", false, -1}, {"2001:db8:0:1::1", true, -1},
		}},
		"IPv4-mapped IPv6 is the IPv4 address": {max: 100, perAddress: 1, steps: []step{
			{"10.0.0.1", true, -1}, {"::ffff:10.0.0.1", false, -1},
		}},
		// max 50 keeps its last 5 for addresses holding fewer than 4.
		"the reserve is for other addresses": {max: 50, perAddress: 100, steps: append(repeat(step{"10.0.0.1", true, -1}, 45),
			step{"10.0.0.1", false, -1}, // the reserve is not for it
			step{"10.0.0.2", true, -1}, step{"10.0.0.2", true, -1}, step{"10.0.0.2", true, -1}, step{"10.0.0.2", true, -1},
			step{"10.0.0.2", false, -1}, // it holds its share of the reserve
			step{"10.0.0.3", true, -1},
			step{"10.0.0.4", false, -1}, // the process holds its cap
		)},
		"an exempt IPv6 address is the peer's, not its /64": {max: 100, perAddress: 1, exempt: "2001:db8::9", steps: []step{
			{"2001:db8::9", true, -1}, {"2001:db8::9", true, -1}, {"2001:db8::1", false, -1},
		}},
		"exempt addresses have no per-address cap": {max: 100, perAddress: 1, exempt: "10.0.0.9", steps: []step{
			{"10.0.0.9", true, -1}, {"10.0.0.9", true, -1}, {"10.0.0.9", true, -1}, {"10.0.0.1", true, -1}, {"10.0.0.1", false, -1},
		}},
		"exempt addresses still count in all": {max: 2, perAddress: 100, exempt: "10.0.0.9", steps: []step{
			{"10.0.0.9", true, -1}, {"10.0.0.9", true, -1}, {"10.0.0.9", false, -1}, {"10.0.0.1", false, -1},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			l, _ := newLimiter(t, tc.max)
			pl := newPipeListener()
			p := Policy{Name: "test", PerAddress: tc.perAddress}
			if tc.exempt != "" {
				p.Exempt = func(a netip.Addr) bool { return a == netip.MustParseAddr(tc.exempt) }
			}
			ln := l.Listen(pl, p)
			defer ln.Close()
			got := make(chan net.Conn)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					got <- c
				}
			}()
			var admitted []net.Conn
			for i, s := range tc.steps {
				if s.close >= 0 {
					admitted[s.close].Close()
				}
				client := pl.dial(s.from)
				closed := make(chan struct{})
				go func() { client.Read(make([]byte, 1)); close(closed) }()
				select {
				case c := <-got:
					if !s.admit {
						t.Fatalf("step %d: connection from %s admitted, want refused", i, s.from)
					}
					admitted = append(admitted, c)
				case <-closed: // what a refused client sees
					if s.admit {
						t.Fatalf("step %d: connection from %s refused, want admitted", i, s.from)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("step %d: neither admitted nor refused", i)
				}
			}
			for _, c := range admitted {
				c.Close()
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.total != 0 {
				t.Errorf("%d connections still counted after all were closed", l.total)
			}
		})
	}
}

func TestRefusalIsAnHTTPAnswer(t *testing.T) {
	l, reg := newLimiter(t, 100)
	pl := newPipeListener()
	ln := l.Listen(pl, Policy{Name: "https", PerAddress: 1, Refuse: HTTPRefusal(nil)})
	defer ln.Close()
	first := pl.dial("10.0.0.1")
	defer first.Close()
	if c, err := ln.Accept(); err != nil {
		t.Fatal(err)
	} else {
		defer c.Close()
	}
	second := pl.dial("10.0.0.1")
	go ln.Accept() // refuses the second and waits for more
	req, _ := http.NewRequest("GET", "http://x/", nil)
	go req.Write(second)
	resp, err := http.ReadResponse(bufio.NewReader(second), req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "Too many connections from your address") {
		t.Errorf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	if n := counterValue(t, l.refused.WithLabelValues("https", "address")); n != 1 {
		t.Errorf("refused counter = %v", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if !names["thingid_connections_refused_total"] || !names["thingid_connections_open"] {
		t.Errorf("metrics served: %v", names)
	}
	for why, want := range map[Reason]string{ReasonAddress: "429 Too Many Requests", ReasonTotal: "503 Service Unavailable"} {
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(RefusalResponse(why))), nil)
		if err != nil || resp.Status != want || resp.Close != true {
			t.Errorf("%s: %v %v", why, resp, err)
		}
	}
}

// Refusals are logged once, then at most once per LogEvery with a count.
func TestRefusalLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Options{Max: 100, Log: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	for range 1000 {
		l.logRefusal("https", ReasonAddress, a, nil)
	}
	if n := strings.Count(buf.String(), "connections refused"); n != 1 {
		t.Fatalf("%d log lines for 1000 refusals, want 1:\n%s", n, buf.String())
	}
	l.lastLog = l.lastLog.Add(-LogEvery)
	l.logRefusal("https", ReasonAddress, a, nil)
	if !strings.Contains(buf.String(), "refused=1000") {
		t.Errorf("the second line does not count the suppressed refusals:\n%s", buf.String())
	}
}

func TestMaxAboveTheOpenFilesLimitIsRefused(t *testing.T) {
	if _, err := New(Options{Max: HighestMax() + 1}); err == nil || !strings.Contains(err.Error(), "connections.max") {
		t.Errorf("err = %v, want one naming connections.max", err)
	}
	l, err := New(Options{})
	if err != nil || l.Max() != DefaultMax() || l.Max() >= openFilesLimit() {
		t.Errorf("derived max %d (limit %d): %v", l.Max(), openFilesLimit(), err)
	}
	// An operator may give the gateway's share of descriptors to connections.
	if l, err := New(Options{Max: HighestMax()}); err != nil || l.Max() < DefaultMax() || l.Max() >= openFilesLimit() {
		t.Errorf("highest max %d (default %d, limit %d): %v", HighestMax(), DefaultMax(), openFilesLimit(), err)
	}
}

func FuzzAddressKey(f *testing.F) {
	for _, s := range []string{"10.0.0.1:80", "[2001:db8::1%eth0]:1", "[::ffff:1.2.3.4]:5", "x", "", "[::]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, peer, ok := addressKey(strAddr(s))
		if !ok {
			return
		}
		if !key.Contains(peer) {
			t.Fatalf("%q: key %v does not hold the peer %v", s, key, peer)
		}
		if !key.IsValid() || key.Addr().Zone() != "" || (key.Addr().Is4() && key.Bits() != 32) || (key.Addr().Is6() && key.Bits() != 64) {
			t.Fatalf("%q: key %v", s, key)
		}
		if key.Masked() != key {
			t.Fatalf("%q: key %v is not masked", s, key)
		}
	})
}

type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
