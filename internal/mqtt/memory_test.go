package mqtt

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqttload"
)

// BenchmarkHeldConnections measures what one held, idle connection costs
// the server core (live heap and goroutine stacks after a collection, and
// goroutines), over TCP and TLS, as internal/broker's benchmark of the same
// name does for today's broker: the clients run in a child process, so
// their side is not counted.
//
//	go test -run '^$' -bench HeldConnections -benchtime 1x ./internal/mqtt/
func BenchmarkHeldConnections(b *testing.B) {
	for _, kind := range []string{"tcp", "tls"} {
		b.Run(kind, func(b *testing.B) {
			s := newServer(b, nil)
			s.auth.open = true
			addr, env := s.addr, []string{}
			if kind == "tls" {
				cert, der := selfSigned(b)
				addr = s.listen(b, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert})
				ca := filepath.Join(b.TempDir(), "ca.der")
				if err := os.WriteFile(ca, der, 0o600); err != nil {
					b.Fatal(err)
				}
				env = append(env, "THINGID_HOLD_CA="+ca)
			}
			const n = 2000
			for range b.N {
				before := settled()
				child := exec.Command(os.Args[0], "-test.run=^TestHoldConnections$")
				child.Env = append(os.Environ(), append(env, "THINGID_HOLD_ADDR="+addr, "THINGID_HOLD_N="+strconv.Itoa(n))...)
				child.Stderr = os.Stderr
				stdin, _ := child.StdinPipe()
				stdout, _ := child.StdoutPipe()
				if err := child.Start(); err != nil {
					b.Fatal(err)
				}
				out := bufio.NewReader(stdout)
				if line, err := out.ReadString('\n'); err != nil || line != fmt.Sprintf("held %d\n", n) {
					b.Fatalf("the child held %q (%v), want %d", line, err, n)
				}
				eventually(b, "every connection is in", func() bool { return s.Stats.Connected.Load() == n })
				after := settled()
				stdin.Close()
				io.Copy(io.Discard, out)
				if err := child.Wait(); err != nil {
					b.Fatal(err)
				}
				per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / n }
				b.ReportMetric(per(after.HeapAlloc, before.HeapAlloc), "heap-B/conn")
				b.ReportMetric(per(after.StackInuse, before.StackInuse), "stack-B/conn")
				b.ReportMetric(per(after.HeapAlloc+after.StackInuse, before.HeapAlloc+before.StackInuse), "B/conn")
				b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/conn")
				eventually(b, "every connection is gone", func() bool { return s.Stats.Connected.Load() == 0 })
			}
		})
	}
}

type memState struct {
	runtime.MemStats
	goroutines int
}

// settled collects garbage twice (stacks shrink, finalizers run) and reads
// the memory statistics.
func settled() memState {
	var m memState
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m.MemStats)
	m.goroutines = runtime.NumGoroutine()
	return m
}

// TestHoldConnections is the child process of BenchmarkHeldConnections.
func TestHoldConnections(t *testing.T) {
	addr := os.Getenv("THINGID_HOLD_ADDR")
	if addr == "" {
		t.Skip("the child process of BenchmarkHeldConnections")
	}
	n, _ := strconv.Atoi(os.Getenv("THINGID_HOLD_N"))
	target := &mqttload.Target{Address: addr, Client: func(i int) mqttload.Credential {
		return mqttload.Credential{ClientID: fmt.Sprint("held-", i)}
	}}
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
	r := mqttload.Connect(context.Background(), target, n, 16, nil)
	defer r.Close()
	if r.Failed > 0 {
		t.Fatalf("%d of %d connections failed: %v", r.Failed, n, r.FirstErr)
	}
	fmt.Printf("held %d\n", r.Opened)
	io.Copy(io.Discard, os.Stdin)
}

// selfSigned is a certificate for localhost and its DER.
func selfSigned(t testing.TB) (tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der
}
