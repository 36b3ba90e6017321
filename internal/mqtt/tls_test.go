package mqtt

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// tlsPair is a TLSConn on a real TCP connection and the Go client talking
// to it, whose raw connection (wire) decides how its bytes are segmented.
type tlsPair struct {
	server *TLSConn
	client *tls.Conn
	wire   *wire
}

func newTLSPair(t *testing.T) *tlsPair {
	t.Helper()
	cert, der := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *TLSConn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		sc := TLSServer(nc, &tls.Config{Certificates: []tls.Certificate{cert}})
		if sc.Handshake() != nil {
			nc.Close()
			sc = nil
		}
		accepted <- sc
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{Conn: nc}
	roots := x509.NewCertPool()
	c, _ := x509.ParseCertificate(der)
	roots.AddCert(c)
	client := tls.Client(w, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("the server's handshake failed")
	}
	t.Cleanup(func() { client.Close(); sc.Close() })
	return &tlsPair{server: sc, client: client, wire: w}
}

// wire is the client's TCP connection: it writes byte by byte (one TCP
// segment each, Nagle being off), or holds what is written until flush
// sends it in one write.
type wire struct {
	net.Conn
	mu      sync.Mutex
	byByte  bool
	holding bool
	held    []byte
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.holding:
		w.held = append(w.held, p...)
		return len(p), nil
	case w.byByte:
		for i := range p {
			if _, err := w.Conn.Write(p[i : i+1]); err != nil {
				return i, err
			}
			time.Sleep(100 * time.Microsecond) // let the byte leave alone
		}
		return len(p), nil
	}
	return w.Conn.Write(p)
}

func (w *wire) hold() { w.mu.Lock(); w.holding = true; w.mu.Unlock() }

// flush sends what was held in one write.
func (w *wire) flush(t *testing.T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holding = false
	if _, err := w.Conn.Write(w.held); err != nil {
		t.Fatal(err)
	}
	w.held = nil
}

// Close sends what is held first (crypto/tls's Close has set the write
// deadline to now after its close_notify).
func (w *wire) Close() error {
	w.mu.Lock()
	if w.holding {
		w.Conn.SetWriteDeadline(time.Time{})
		w.Conn.Write(w.held)
		w.held, w.holding = nil, false
	}
	w.mu.Unlock()
	return w.Conn.Close()
}

// readAll reads n bytes from the server the way the MQTT reader does when
// idle, 16 bytes at a time; a hang fails after 10 s (the read deadline).
// (A read that fills its buffer exactly leaves the next one to wait in
// crypto/tls, which may hold more: the tests' messages avoid multiples of
// 16 bytes.)
func (p *tlsPair) readAll(t *testing.T, n int) []byte {
	t.Helper()
	p.server.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer p.server.SetReadDeadline(time.Time{})
	var got []byte
	var b [16]byte
	for len(got) < n {
		k, err := p.server.Read(b[:])
		got = append(got, b[:k]...)
		if err != nil {
			t.Fatalf("read %d of %d bytes: %v", len(got), n, err)
		}
	}
	return got
}

// parked reads on the server in the background and waits until that read
// waits for the socket outside crypto/tls; the read's result comes on the
// channel returned.
func (p *tlsPair) parked(t *testing.T) <-chan readResult {
	t.Helper()
	done := make(chan readResult, 1)
	go func() {
		var b [16]byte
		n, err := p.server.Read(b[:])
		done <- readResult{string(b[:n]), err}
	}()
	waitParked(t, done)
	return done
}

type readResult struct {
	data string
	err  error
}

// waitParked waits until the read behind done waits in records.wait on
// the poller, outside crypto/tls.
func waitParked(t *testing.T, done <-chan readResult) {
	t.Helper()
	waitReader(t, done, "outside crypto/tls", func(g string) bool {
		return strings.Contains(g, "mqtt.(*records).wait") && strings.Contains(g, "RawRead") && !strings.Contains(g, "crypto/tls")
	})
}

// waitReader waits until the stack of the read behind done passes is.
func waitReader(t *testing.T, done <-chan readResult, what string, is func(stack string) bool) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("the read returned %q, %v instead of waiting", r.data, r.err)
		default:
		}
		n := runtime.Stack(buf, true)
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "mqtt.(*tlsPair).parked.func1") && is(g) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reader waits %s:\n%s", what, buf[:n])
		}
	}
}

// The records under crypto/tls arrive in every shape; the server reads
// every byte, and its reader then waits outside crypto/tls, and wakes for
// the next record.
func TestTLSConnRecords(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1000)[:15999] // larger than a record, read 16 bytes at a time
	for name, send := range map[string]func(*testing.T, *tlsPair) []byte{
		"a record in many segments": func(t *testing.T, p *tlsPair) []byte {
			p.wire.byByte = true
			p.client.Write([]byte("a record, one byte per segment"))
			return []byte("a record, one byte per segment")
		},
		"several records in one segment": func(t *testing.T, p *tlsPair) []byte {
			p.wire.hold()
			var all []byte
			for _, s := range []string{"first", "", "second record", "third"} {
				p.client.Write([]byte(s))
				all = append(all, s...)
			}
			p.wire.flush(t)
			return all
		},
		"a record larger than the read": func(t *testing.T, p *tlsPair) []byte {
			p.client.Write(big)
			return big
		},
		"a record and a half": func(t *testing.T, p *tlsPair) []byte {
			p.wire.hold()
			p.client.Write([]byte("whole"))
			p.client.Write([]byte("split"))
			p.wire.mu.Lock()
			half := len(p.wire.held) - 10
			p.wire.Conn.Write(p.wire.held[:half])
			rest := p.wire.held[half:]
			p.wire.held, p.wire.holding = nil, false
			p.wire.mu.Unlock()
			go func() {
				time.Sleep(20 * time.Millisecond) // the server reads the first part alone
				p.wire.Conn.Write(rest)
			}()
			return []byte("wholesplit")
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := newTLSPair(t)
			done := p.parked(t)
			want := send(t, p)
			first := <-done
			if first.err != nil {
				t.Fatal(first.err)
			}
			got := append([]byte(first.data), p.readAll(t, len(want)-len(first.data))...)
			if !bytes.Equal(got, want) {
				t.Fatalf("read %q, want %q", got, want)
			}
			done = p.parked(t)
			p.wire.byByte, p.wire.holding = false, false
			p.client.Write([]byte("next"))
			if r := <-done; r.data != "next" || r.err != nil {
				t.Fatalf("after waiting: %q, %v", r.data, r.err)
			}
		})
	}
}

// A client's close_notify right behind its data, in the same segment: the
// data is read, then the end.
func TestTLSConnCloseNotifyAfterData(t *testing.T) {
	p := newTLSPair(t)
	done := p.parked(t)
	p.wire.hold()
	p.client.Write([]byte("bye"))
	p.client.Close() // close_notify, then the wire flushes both
	if r := <-done; r.data != "bye" {
		t.Fatalf("read %q, %v", r.data, r.err)
	}
	p.server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.server.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("after close_notify: %v, want EOF", err)
	}
}

// The read deadline (the keep-alive's) ends a wait outside crypto/tls as
// it ends a read, as a timeout; so does closing the connection (a
// revocation, the server's shutdown).
func TestTLSConnWaitEnds(t *testing.T) {
	p := newTLSPair(t)
	done := p.parked(t)
	p.server.SetReadDeadline(time.Now())
	r := <-done
	var ne net.Error
	if !errors.As(r.err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline while waiting: %q, %v; want a timeout", r.data, r.err)
	}

	p = newTLSPair(t)
	done = p.parked(t)
	p.server.Close()
	if r := <-done; !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("closed while waiting: %q, %v", r.data, r.err)
	}
}

// sClient is OpenSSL's s_client, with args, connected to a TLSConn with
// cfg: its standard input, and the lines of its output and of its errors.
func sClient(t *testing.T, cfg *tls.Config, args ...string) (sc *TLSConn, stdin io.WriteCloser, stdout, stderr <-chan string) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is not installed")
		}
		t.Skip("openssl is not installed")
	}
	cert, _ := selfSigned(t)
	cfg.Certificates = []tls.Certificate{cert}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *TLSConn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- TLSServer(nc, cfg)
	}()
	cmd := exec.Command(openssl, append([]string{"s_client", "-connect", ln.Addr().String(), "-no_ign_eof"}, args...)...)
	stdin, _ = cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	errs, _ := cmd.StderrPipe()
	lines := func(r io.Reader) <-chan string {
		ch := make(chan string, 64)
		go func() {
			for s := bufio.NewScanner(r); s.Scan(); {
				ch <- s.Text()
			}
			close(ch)
		}()
		return ch
	}
	stdout, stderr = lines(out), lines(errs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	sc = <-accepted
	if sc == nil {
		t.Fatal("no connection")
	}
	t.Cleanup(func() { sc.Close() })
	return sc, stdin, stdout, stderr
}

// waitLine waits for a line of lines that starts with prefix.
func waitLine(t *testing.T, lines <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("s_client said no line starting with %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("s_client said no line starting with %q in 10 s", prefix)
		}
	}
}

// A KeyUpdate from the client (OpenSSL's s_client sends one for its "K"
// command, asking for the server's) reaches a reader waiting outside
// crypto/tls, which handles it, waits again and reads on with the new
// keys, and answers with its own.
func TestTLSConnKeyUpdate(t *testing.T) {
	sc, stdin, stdout, stderr := sClient(t, &tls.Config{MinVersion: tls.VersionTLS13}, "-tls1_3")
	p := &tlsPair{server: sc}
	io.WriteString(stdin, "one\n")
	if got := string(p.readAll(t, 4)); got != "one\n" {
		t.Fatalf("read %q", got)
	}
	done := p.parked(t)
	io.WriteString(stdin, "K\n") // a KeyUpdate, update_requested
	// s_client says KEYUPDATE once it sent it; a line written with the "K"
	// would be taken for part of the command.
	waitLine(t, stderr, "KEYUPDATE")
	io.WriteString(stdin, "two\n")
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := r.data + string(p.readAll(t, 4-len(r.data))); got != "two\n" {
		t.Fatalf("after the KeyUpdate: %q", got)
	}
	// The client reads the answer with the server's new keys.
	sc.Write([]byte("echo two\n"))
	if got := waitLine(t, stdout, "echo "); got != "echo two" {
		t.Fatalf("the client read %q", got)
	}
}

// A TLS 1.2 client's renegotiation (s_client's "R": a ClientHello after
// the handshake, encrypted) reaches a reader waiting outside crypto/tls,
// which refuses it: the read fails (the MQTT core then ends the
// connection).
func TestTLSConnRenegotiationRefused(t *testing.T) {
	sc, stdin, _, stderr := sClient(t, &tls.Config{MaxVersion: tls.VersionTLS12}, "-tls1_2")
	p := &tlsPair{server: sc}
	io.WriteString(stdin, "one\n")
	if got := string(p.readAll(t, 4)); got != "one\n" {
		t.Fatalf("read %q", got)
	}
	done := p.parked(t)
	io.WriteString(stdin, "R\n")
	waitLine(t, stderr, "RENEGOTIATING")
	if r := <-done; r.err == nil || errors.Is(r.err, ErrWouldWait) || r.data != "" {
		t.Fatalf("after a renegotiation: %q, %v; want an error", r.data, r.err)
	}
}

// chunks is a reader that returns data in reads of the sizes given (each
// at most the caller's buffer).
type chunks struct {
	data  []byte
	sizes []byte
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[0])+1)
		c.sizes = c.sizes[1:]
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// FuzzRecords holds records' reads to what a reader of the stream must
// see: every byte once and in order, no read crossing the end of a record
// (found here by walking the headers anew), and nothing held ahead once
// the stream ends on a record's end.
func FuzzRecords(f *testing.F) {
	f.Add([]byte("\x17\x03\x03\x00\x02ab\x17\x03\x03\x00\x00\x15\x03\x03\x00\x01z"), []byte{0, 7, 2}, uint8(16))
	f.Add([]byte("\x16\x03\x01\x01\x00"), []byte{200}, uint8(3))
	f.Fuzz(func(t *testing.T, stream, sizes []byte, bufSize uint8) {
		r := &records{Conn: readerConn{&chunks{data: stream, sizes: sizes}}}
		// The ends of the records, from the headers.
		ends := map[int]bool{}
		for i := 0; i+recordHeaderLen <= len(stream); {
			i += recordHeaderLen + (int(stream[i+3])<<8 | int(stream[i+4]))
			ends[i] = true
		}
		var got []byte
		buf := make([]byte, int(bufSize)+1)
		for {
			n, err := r.Read(buf)
			for i := len(got) + 1; i < len(got)+n; i++ {
				if ends[i] {
					t.Fatalf("a read of %d bytes at %d crosses the end of a record at %d", n, len(got), i)
				}
			}
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("read %x, want %x", got, stream)
		}
		if r.ahead != nil {
			t.Fatal("bytes held ahead at the end of the stream")
		}
		if r.between() != (len(stream) == 0 || ends[len(stream)]) {
			t.Fatalf("between records: %v at %d", r.between(), len(stream))
		}
	})
}

// readerConn is a net.Conn that only reads.
type readerConn struct{ io.Reader }

func (readerConn) Write(p []byte) (int, error)      { return len(p), nil }
func (readerConn) Close() error                     { return nil }
func (readerConn) LocalAddr() net.Addr              { return nil }
func (readerConn) RemoteAddr() net.Addr             { return nil }
func (readerConn) SetDeadline(time.Time) error      { return nil }
func (readerConn) SetReadDeadline(time.Time) error  { return nil }
func (readerConn) SetWriteDeadline(time.Time) error { return nil }

// An idle TLS connection's reader keeps the smallest stack also after it
// read packets through crypto/tls, which grows a stack to 4 KiB that Go
// would not shrink while the reader waits: a new goroutine takes the idle
// connection over. 200 connections, each sends a PINGREQ and a PUBLISH
// after its CONNECT and then nothing; their goroutines' stacks, after a
// collection, take less than 3 KiB each (4 KiB and more when the reader
// that read the packets waits on).
func TestIdleTLSReadersStaySmall(t *testing.T) {
	s := newServer(t, nil)
	cert, der := selfSigned(t)
	addr := s.listen(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	roots.AddCert(leaf)
	stacks := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	const n = 200
	before := stacks()
	for i := range n {
		nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		c := mqtttest.New(t, nc, packet.V5)
		if ack := c.Connect(&packet.Connect{CleanStart: true, ClientID: fmt.Sprint("idle-", i), KeepAlive: 60,
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")}); ack.Code != 0 {
			t.Fatalf("CONNACK %#x", ack.Code)
		}
		c.Send(&packet.Ping{})
		if p, ok := c.Read().(*packet.Ping); !ok || !p.Response {
			t.Fatal("no PINGRESP")
		}
		c.Send(&packet.Publish{QoS: 1, PacketID: 1, Topic: "idle/" + fmt.Sprint(i), Payload: []byte("21")})
		if _, ok := c.Read().(*packet.Ack); !ok {
			t.Fatal("no PUBACK")
		}
	}
	if !waitFor(func() bool { return s.Stats.Parked.Load() == n }) {
		t.Fatalf("%d idle connections parked outside crypto/tls, want %d", s.Stats.Parked.Load(), n)
	}
	per := float64(stacks()-before) / n
	t.Logf("%.0f bytes of stack per idle TLS connection", per)
	if raceDetector {
		return // the readers wait outside crypto/tls; their size is measured without the detector
	}
	if per >= 3<<10 {
		t.Fatalf("%.0f bytes of stack per idle TLS connection, want less than 3 KiB", per)
	}
}

// waitFor waits up to 5 s for cond.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
