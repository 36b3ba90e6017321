// Package heldtest measures what held, idle MQTT connections cost a server
// running in the test's process: a child process (the test binary itself,
// running the package's TestHoldConnections, which calls Hold) opens them,
// so that their client side is not counted. Imported only by tests.
package heldtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/mqttload"
)

// The child's environment.
const (
	EnvAddr  = "THINGID_HOLD_ADDR"  // host:port to connect to
	EnvN     = "THINGID_HOLD_N"     // anonymous connections held-0, held-1, …
	EnvCreds = "THINGID_HOLD_CREDS" // or a file of "clientID token" lines
	EnvCA    = "THINGID_HOLD_CA"    // a DER certificate to trust: TLS
	// EnvClassicHello, when set, makes the TLS client offer X25519 and
	// P-256 only, as most devices' TLS stacks do (mbedTLS, OpenSSL 3.0):
	// Go's own ClientHello carries a 1.2 KiB post-quantum key share
	// (X25519MLKEM768), and crypto/tls keeps the buffers it grew to read
	// it for the connection's life.
	EnvClassicHello = "THINGID_HOLD_CLASSIC_HELLO"
)

// Options of one measurement.
type Options struct {
	N   int      // connections the child holds
	Env []string // the child's Env* variables
	// Ready is called once the child says it holds N connections, before
	// the memory is read: wait there until the server sees them all.
	Ready func()
	// Held is called after the memory is read, while the connections are
	// still held (to write profiles); nil: nothing.
	Held func()
	// Done is called once the child has exited; nil: nothing.
	Done func()
}

// Measure runs the child b.N times and reports per held connection the
// live heap, goroutine stacks, both together and goroutines, after a
// collection.
func Measure(b *testing.B, o Options) {
	b.Helper()
	for range b.N {
		before := settled()
		child := exec.Command(os.Args[0], "-test.run=^TestHoldConnections$")
		child.Env = append(os.Environ(), o.Env...)
		child.Stderr = os.Stderr
		stdin, _ := child.StdinPipe()
		stdout, _ := child.StdoutPipe()
		if err := child.Start(); err != nil {
			b.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		if line, err := out.ReadString('\n'); err != nil || line != fmt.Sprintf("held %d\n", o.N) {
			b.Fatalf("the child held %q (%v), want %d connections", line, err, o.N)
		}
		o.Ready()
		after := settled()
		if o.Held != nil {
			o.Held()
		}
		stdin.Close() // the child closes its connections and exits
		io.Copy(io.Discard, out)
		if err := child.Wait(); err != nil {
			b.Fatal(err)
		}
		per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(o.N) }
		b.ReportMetric(per(after.HeapAlloc, before.HeapAlloc), "heap-B/conn")
		b.ReportMetric(per(after.StackInuse, before.StackInuse), "stack-B/conn")
		b.ReportMetric(per(after.HeapAlloc+after.StackInuse, before.HeapAlloc+before.StackInuse), "B/conn")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(o.N), "goroutines/conn")
		if o.Done != nil {
			o.Done()
		}
	}
}

type memState struct {
	runtime.MemStats
	goroutines int
}

// settled collects garbage twice (so that stacks shrink to what is in use
// and finalizers have run) and reads the memory statistics.
func settled() memState {
	var m memState
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m.MemStats)
	m.goroutines = runtime.NumGoroutine()
	return m
}

// Hold is the child's side: it opens the connections its environment
// names, says how many it holds ("held N") and keeps them until its
// standard input closes. Without EnvAddr (a test run on its own) it skips.
func Hold(t *testing.T) {
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		t.Skip("the child process of BenchmarkHeldConnections")
	}
	var creds []mqttload.Credential
	if file := os.Getenv(EnvCreds); file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(raw)) {
			id, tok, _ := strings.Cut(strings.TrimSpace(line), " ")
			creds = append(creds, mqttload.Credential{ClientID: id, Username: "bench", Password: tok})
		}
	} else {
		n, _ := strconv.Atoi(os.Getenv(EnvN))
		for i := range n {
			creds = append(creds, mqttload.Credential{ClientID: fmt.Sprint("held-", i)})
		}
	}
	target := &mqttload.Target{Address: addr, Client: func(i int) mqttload.Credential { return creds[i] }}
	if ca := os.Getenv(EnvCA); ca != "" {
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
		if os.Getenv(EnvClassicHello) != "" {
			target.TLS.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		}
	}
	r := mqttload.Connect(context.Background(), target, len(creds), 16, nil)
	defer r.Close()
	if r.Failed > 0 {
		t.Fatalf("%d of %d connections failed: %v", r.Failed, len(creds), r.FirstErr)
	}
	fmt.Printf("held %d\n", r.Opened)
	io.Copy(io.Discard, os.Stdin)
}
