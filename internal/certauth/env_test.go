package certauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

var quiet = slog.New(slog.DiscardHandler)

// env is a Checker on a real SQLite store, with the real identity service and
// event bus and a real platform CA. The root is imported from files the test
// generated, so that the test also holds the root's key and can forge what
// only the platform could sign.
type env struct {
	t       testing.TB
	st      store.Store
	ids     *identity.Service
	bus     *events.Bus
	dca     *pki.DeviceCA
	rootKey crypto.Signer
	skew    atomic.Int64 // added to the clock of every Checker of env
	c       *Checker
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	rootCert, rootKey := newCA(t, pkix.Name{Organization: []string{"thingid"}, CommonName: "thingid platform CA"}, nil, nil, 1)
	certFile, keyFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "root.key")
	writePEM(t, certFile, "CERTIFICATE", rootCert.Raw)
	p8, _ := x509.MarshalPKCS8PrivateKey(rootKey)
	writePEM(t, keyFile, "PRIVATE KEY", p8)
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	_, dca, err := pki.Open(filepath.Join(dir, "pki"), key, pki.Import{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	dca.CRLURL = "https://id.example.com/pki/crl"
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, bus: events.New(), dca: dca, rootKey: rootKey}
	e.ids = identity.New(st, e.bus, password.Policy{})
	e.c = e.checker()
	return e
}

// checker returns another Checker on env's store and bus: another node.
func (e *env) checker() *Checker {
	e.t.Helper()
	c, err := New(context.Background(), Options{
		Store: e.st, Identity: e.ids, DeviceCA: e.dca, Bus: e.bus, Log: quiet,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) },
		// Longer than any test: what reaches a Checker comes through the bus.
		ReloadInterval: time.Hour,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	return c
}

// thing creates an active thing with serial and a platform certificate for
// it, recorded on the thing as the factory does.
func (e *env) thing(serial string) (*store.Thing, *pki.DeviceCert) {
	e.t.Helper()
	ctx := context.Background()
	th, err := e.ids.CreateThing(ctx, "test", &store.Thing{Manufacturer: "thingid", Model: "SPK", SerialNumber: serial})
	if err != nil {
		e.t.Fatal(err)
	}
	dc, err := e.dca.IssueDevice(th.ID, serial, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	th, err = e.ids.AddCertificate(ctx, "test", th.ID, store.CertRefOf(dc.Leaf))
	if err != nil {
		e.t.Fatal(err)
	}
	return th, dc
}

// chain parses a DeviceCert's chain as a TLS peer presents it.
func chain(t testing.TB, dc *pki.DeviceCert) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range dc.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func chainOf(certs ...*x509.Certificate) []*x509.Certificate { return certs }

// newCA makes a CA certificate: self-signed when parent is nil. pathLen < 0
// leaves the path length open.
func newCA(t testing.TB, subject pkix.Name, parent *x509.Certificate, parentKey crypto.Signer, pathLen int) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	return sign(t, tmpl, parent, key.Public(), parentKey), key
}

// leafTmpl is a client certificate template: subject serialNumber and CN
// serial, one year, clientAuth.
func leafTmpl(serial string, uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{SerialNumber: serial, CommonName: serial},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	return tmpl
}

// issue signs tmpl with a fresh key under parent.
func issue(t testing.TB, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return sign(t, tmpl, parent, key.Public(), parentKey), key
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func writePEM(t testing.TB, name, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
