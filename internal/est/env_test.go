package est

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/sdk"
)

// env is an EST server on a real TLS listener (client certificates requested,
// as on thingid's HTTPS port) over a SQLite store, with the device CA of
// internal/pki and the certificate checker of internal/certauth.
type env struct {
	st    store.Store
	id    *identity.Service
	ca    *pki.DeviceCA
	caDir string
	est   *Server
	certs *certauth.Checker
	srv   *httptest.Server
	// reg holds the metrics of est and certauth.
	reg *prometheus.Registry
	// thing is active with serial SN-0001.
	thing *store.Thing
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bus := events.New()
	ids := identity.New(st, bus, password.Policy{MinLength: 15})
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	caDir := filepath.Join(dir, "pki")
	root, err := pki.LoadOrCreateCA(caDir, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.DeviceCA(caDir, key)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	checker, err := certauth.New(context.Background(), certauth.Options{Store: st, Identity: ids, DeviceCA: ca, Bus: bus, Log: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(checker.Close)
	tokenKey := make([]byte, 32)
	rand.Read(tokenKey)
	s, err := New(Options{CA: ca, Identity: ids, Audit: st, Certificates: checker, TokenKey: tokenKey,
		Actor: func(*http.Request) string { return "admin:test" }, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	// The admin API's protection is the server's (internal/server tests it);
	// here every caller is an administrator.
	s.Register(mux, func(h http.Handler) http.Handler { return h })
	// The platform's own server certificate (ECDSA, from the platform CA), as
	// `thingid serve` has on its HTTPS port.
	serverCert, err := root.ServerCertificate(caDir, []string{"localhost", "127.0.0.1"}, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	e := &env{st: st, id: ids, ca: ca, caDir: caDir, est: s, certs: checker, srv: srv, reg: reg}
	e.thing = e.newThing(t, "SN-0001")
	return e
}

func (e *env) newThing(t testing.TB, serial string) *store.Thing {
	t.Helper()
	th, err := e.id.CreateThing(context.Background(), "test", &store.Thing{Model: "Speaker", SerialNumber: serial})
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// token makes an enrollment token for th.
func (e *env) token(t testing.TB, th *store.Thing) string {
	t.Helper()
	tok, err := e.est.CreateToken(context.Background(), "admin:test", th.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Secret
}

// client is a TLS client trusting the platform CA, presenting certs.
func (e *env) client(certs ...tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// post sends an EST request with a base64 body.
func (e *env) post(t testing.TB, c *http.Client, op, body string, auth func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+Prefix+op, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/pkcs10")
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func basic(user, pw string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pw) }
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrBody is the base64 of a DER CSR for key with subject.
func csrBody(t testing.TB, key crypto.Signer, subject pkix.Name) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// issued decodes an enrollment answer; the first certificate is the new one.
func issued(t testing.TB, body string) []*x509.Certificate {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, body))
	if err != nil {
		t.Fatalf("answer is not base64: %v\n%s", err, body)
	}
	certs, err := sdk.ParseCertsOnly(der)
	if err != nil {
		t.Fatalf("answer is not certs-only: %v", err)
	}
	return certs
}

// deviceCert issues a platform certificate for th and records it, as the
// factory does; it returns the TLS certificate and its files.
func (e *env) deviceCert(t testing.TB, th *store.Thing) (tls.Certificate, string, string) {
	t.Helper()
	dc, err := e.ca.IssueDevice(th.ID, th.SerialNumber, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.id.AddCertificate(context.Background(), "test", th.ID, store.CertRefOf(dc.Leaf)); err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := dc.KeyPEM()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
	os.WriteFile(certFile, dc.ChainPEM(), 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	pair, err := tls.X509KeyPair(dc.ChainPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// testCA is a CA of the test's own: a manufacturer's, or a rogue one.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue makes a TLS client certificate with subject and URI SANs.
func (c *testCA) issue(t testing.TB, subject pkix.Name, uris ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

func (c *testCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}))
}

// need returns the path of a Debian tool, skipping the test without it
// (failing in CI, where it must be installed).
func need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: apt-get install %s", tool, tool)
		}
		t.Skipf("%s not installed; skipping (apt-get install %s)", tool, tool)
	}
	return p
}

// serverCAFile is the platform CA's file, for curl --cacert.
func (e *env) serverCAFile(t testing.TB) string { return filepath.Join(e.caDir, "ca.crt") }
