package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqttload/heldtest"
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
				env = append(env, heldtest.EnvCA+"="+ca)
			}
			const n = 2000
			heldtest.Measure(b, heldtest.Options{N: n, Env: append(env, heldtest.EnvAddr+"="+addr, heldtest.EnvN+"="+strconv.Itoa(n)),
				Ready: func() { eventually(b, "every connection is in", func() bool { return s.Stats.Connected.Load() == n }) },
				Done: func() {
					eventually(b, "every connection is gone", func() bool { return s.Stats.Connected.Load() == 0 })
				},
			})
		})
	}
}

// TestHoldConnections is the child process of BenchmarkHeldConnections.
func TestHoldConnections(t *testing.T) { heldtest.Hold(t) }

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
