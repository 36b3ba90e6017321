package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/mqttload"
)

// BenchmarkHeldConnections measures what one held, idle, authenticated
// connection costs the broker: live heap, goroutine stacks and goroutines,
// after a garbage collection, over plain TCP and over TLS. Each thing
// connects with its own token through the real listener. The connections are
// opened by a child process (TestHoldConnections in this binary) so that
// the clients' side of them (their TLS state, the server certificate each
// one parses) is not counted. With THINGID_HELD_PROFILE=dir it also writes
// the heap and goroutine profiles taken while the connections are held.
//
//	go test -run '^$' -bench HeldConnections -benchtime 1x ./internal/broker/
func BenchmarkHeldConnections(b *testing.B) {
	for _, listener := range []string{"tcp", "tls"} {
		b.Run(listener, func(b *testing.B) { benchHeld(b, listener, 2000) })
	}
}

func benchHeld(b *testing.B, listener string, n int) {
	if os.Getenv("THINGID_HELD_PROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, not a sample
	}
	e := newEnv(b, nil)
	dir := b.TempDir()
	var creds strings.Builder
	for range n {
		th := e.thing("M")
		fmt.Fprintf(&creds, "%s %s\n", th.ID, e.thingToken(th))
	}
	env := []string{"THINGID_HOLD_ADDR=" + e.b.Addr(listener), "THINGID_HOLD_CREDS=" + filepath.Join(dir, "creds")}
	if err := os.WriteFile(filepath.Join(dir, "creds"), []byte(creds.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if listener == "tls" {
		ca := e.opts.Listeners[0].TLS.Certificates[0].Certificate[0]
		if err := os.WriteFile(filepath.Join(dir, "ca.der"), ca, 0o600); err != nil {
			b.Fatal(err)
		}
		env = append(env, "THINGID_HOLD_CA="+filepath.Join(dir, "ca.der"))
	}
	b.ResetTimer()
	for range b.N {
		before := settled()
		child := exec.Command(os.Args[0], "-test.run=^TestHoldConnections$")
		child.Env = append(os.Environ(), env...)
		child.Stderr = os.Stderr
		stdin, _ := child.StdinPipe()
		stdout, _ := child.StdoutPipe()
		if err := child.Start(); err != nil {
			b.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		line, err := out.ReadString('\n')
		if err != nil || line != "held "+strconv.Itoa(n)+"\n" {
			b.Fatalf("the child held %q (%v), want %d connections", line, err, n)
		}
		if got := e.b.server.Stats.Connected.Load(); got != int64(n) {
			b.Fatalf("%d clients connected, want %d", got, n)
		}
		after := settled()
		if p := os.Getenv("THINGID_HELD_PROFILE"); p != "" {
			writeProfiles(b, p, listener)
		}
		stdin.Close() // the child closes its connections and exits
		io.Copy(io.Discard, out)
		if err := child.Wait(); err != nil {
			b.Fatal(err)
		}
		per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
		b.ReportMetric(per(after.HeapAlloc, before.HeapAlloc), "heap-B/conn")
		b.ReportMetric(per(after.StackInuse, before.StackInuse), "stack-B/conn")
		b.ReportMetric(per(after.HeapAlloc+after.StackInuse, before.HeapAlloc+before.StackInuse), "B/conn")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/conn")
	}
}

type memState struct {
	runtime.MemStats
	goroutines int
}

// settled collects garbage (twice, so that stacks shrink to what is in use
// and finalizers have run) and reads the memory statistics.
func settled() memState {
	var m memState
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m.MemStats)
	m.goroutines = runtime.NumGoroutine()
	return m
}

func writeProfiles(b *testing.B, dir, listener string) {
	for _, p := range []string{"heap", "goroutine"} {
		f, err := os.Create(filepath.Join(dir, listener+"."+p))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup(p).WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// TestHoldConnections is the child process of BenchmarkHeldConnections: it
// connects with each credential, says how many it holds and keeps them
// until its standard input closes. Run on its own, it does nothing.
func TestHoldConnections(t *testing.T) {
	addr := os.Getenv("THINGID_HOLD_ADDR")
	if addr == "" {
		t.Skip("the child process of BenchmarkHeldConnections")
	}
	raw, err := os.ReadFile(os.Getenv("THINGID_HOLD_CREDS"))
	if err != nil {
		t.Fatal(err)
	}
	var creds []mqttload.Credential
	for line := range strings.Lines(string(raw)) {
		id, tok, _ := strings.Cut(strings.TrimSpace(line), " ")
		creds = append(creds, mqttload.Credential{ClientID: id, Username: "bench", Password: tok})
	}
	target := &mqttload.Target{Address: addr, Client: func(i int) mqttload.Credential { return creds[i] }}
	if ca := os.Getenv("THINGID_HOLD_CA"); ca != "" {
		der, err := os.ReadFile(ca)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		target.TLS = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	r := mqttload.Connect(context.Background(), target, len(creds), 16, nil)
	defer r.Close()
	if r.Failed > 0 {
		t.Fatalf("%d of %d connections failed: %v", r.Failed, len(creds), r.FirstErr)
	}
	fmt.Printf("held %d\n", r.Opened)
	io.Copy(io.Discard, os.Stdin)
}

// A connection keeps nothing of its CONNECT packet: the core copies what it
// keeps (client identifier, will) and the session holds the identity, never
// the token sent as Authentication Data.
func TestConnectionKeepsNoToken(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("M")
	tok := e.thingToken(th)
	_, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: true, Username: "device", UsernameFlag: true,
		Properties:  &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(tok), User: paho.UserProperties{{Key: "k", Value: "v"}}},
		WillMessage: &paho.WillMessage{Topic: "things/" + th.ID + "/status", Payload: []byte("offline")}})
	if err != nil {
		t.Fatal(err)
	}
	cl := e.b.server.Client(th.ID)
	if cl == nil {
		t.Fatal("no client")
	}
	id := sessionOf(cl).state.Load().id
	if cl.ID != th.ID || id.AuthMethod != AuthMethod || id.Thing != th.ID || bytes.Contains(e.b.auth.EncodeIdentity(cl.Identity()), []byte(tok)) {
		t.Fatalf("the session keeps id %q, method %q, thing %q, record %q", cl.ID, id.AuthMethod, id.Thing, e.b.auth.EncodeIdentity(cl.Identity()))
	}

	// A persistent session keeps its identity record (record.go).
	th2 := e.thing("M")
	expiry := uint32(60)
	if _, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th2.ID, Password: []byte(e.thingToken(th2)), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatal(err)
	}
	rec := e.b.auth.EncodeIdentity(e.b.server.Client(th2.ID).Identity())
	if id, ok := decodeRecord(rec); !ok || id.Thing != th2.ID {
		t.Fatalf("persistent session record %q", rec)
	}
}
