package directory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/netlimit"
)

// testEnv is a directory serving on both kinds of listener on loopback,
// through a real netlimit.Limiter.
type testEnv struct {
	srv      *Server
	ldaps    string // host:port
	plain    string // host:port (StartTLS)
	caFile   string // PEM of the server certificate, for ldapsearch
	clientTL *tls.Config
}

type envOption func(*Options, *netlimit.Policy)

func withLimits(l Limits) envOption { return func(o *Options, _ *netlimit.Policy) { o.Limits = l } }
func withPerAddress(n int) envOption {
	return func(_ *Options, p *netlimit.Policy) { p.PerAddress = n }
}

func defaultLimits() Limits {
	return Limits{MaxMessageBytes: 64 << 10, IdleTimeout: time.Minute, ReadTimeout: 10 * time.Second}
}

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	cert, pool, caPEM := selfSigned(t)
	o := Options{BaseDN: "dc=thingid,dc=test", TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}, Limits: defaultLimits(), Log: slog.New(slog.DiscardHandler)}
	pol := netlimit.Policy{Name: "ldap", PerAddress: 64}
	for _, f := range opts {
		f(&o, &pol)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := netlimit.New(netlimit.Options{Max: 256})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{srv: srv, clientTL: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	for _, ldaps := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := pol
		p.Name = map[bool]string{true: "ldaps", false: "ldap"}[ldaps]
		go srv.Serve(lim.Listen(ln, p), ldaps)
		t.Cleanup(func() { ln.Close() })
		if ldaps {
			e.ldaps = ln.Addr().String()
		} else {
			e.plain = ln.Addr().String()
		}
	}
	t.Cleanup(func() { srv.Close() })
	e.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(e.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// selfSigned makes a certificate for 127.0.0.1 that is its own CA.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// dialStartTLS connects to the plain listener and runs StartTLS.
func (e *testEnv) dialStartTLS(t *testing.T) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + e.plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.StartTLS(e.clientTL); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	return c
}

// dialPlain connects to the plain listener without TLS.
func (e *testEnv) dialPlain(t *testing.T) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + e.plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialLDAPS connects to the LDAPS listener.
func (e *testEnv) dialLDAPS(t *testing.T) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldaps://"+e.ldaps, ldap.DialWithTLSConfig(e.clientTL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tool returns the path of an OpenLDAP client, skipping the test when it is
// missing (failing in CI).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: apt-get install ldap-utils", name)
		}
		t.Skipf("%s not installed (apt-get install ldap-utils)", name)
	}
	return p
}

// run runs an OpenLDAP client trusting the test certificate; it returns the
// output and the exit code.
func (e *testEnv) run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+e.caFile, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), code
}
