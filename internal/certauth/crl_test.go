package certauth

import (
	"bytes"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/problem"
)

// serve runs c's handlers behind a real TLS server; the admin API takes the
// bearer token "admin" and names the actor "api-admin".
func serve(t *testing.T, c *Checker) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	admin := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer admin" {
				problem.Write(w, http.StatusUnauthorized, "", "administrator credentials required")
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	c.Register(mux, admin, func(*http.Request) string { return "api-admin" })
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// fetchCRL downloads and checks the CRL served over HTTPS.
func fetchCRL(t *testing.T, srv *httptest.Server, dca *pki.DeviceCA) (*x509.RevocationList, []byte) {
	t.Helper()
	resp, der := get(t, srv, PathCRL)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %s %s", PathCRL, resp.Status, resp.Header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(dca.Cert); err != nil {
		t.Fatalf("CRL not signed by the device issuing CA: %v", err)
	}
	return crl, der
}

func TestCRL(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	srv := serve(t, e.c)
	_, good := e.thing("SPK-C1")
	_, bad := e.thing("SPK-C2")
	_, quiet := e.thing("SPK-C3")
	whole, wholeCert := e.thing("SPK-C4")

	empty, _ := fetchCRL(t, srv, e.dca)
	if len(empty.RevokedCertificateEntries) != 0 || empty.Number == nil ||
		empty.NextUpdate.Sub(empty.ThisUpdate) != defaultCRLLifetime || !bytes.Equal(empty.AuthorityKeyId, e.dca.Cert.SubjectKeyId) {
		t.Fatalf("empty CRL: %d entries, number %v, %v..%v", len(empty.RevokedCertificateEntries), empty.Number, empty.ThisUpdate, empty.NextUpdate)
	}
	// Fetching again before anything changed returns the same CRL.
	if again, _ := fetchCRL(t, srv, e.dca); again.Number.Cmp(empty.Number) != 0 {
		t.Errorf("CRL re-signed without a change: %v then %v", empty.Number, again.Number)
	}

	if _, err := e.c.Revoke(ctx, "test", Revocation{Certificate: bad.Leaf, Reason: ReasonKeyCompromise}); err != nil {
		t.Fatal(err)
	}
	// Known only by its fingerprint: refused by thingid, absent from the CRL
	// (which lists serial numbers).
	if _, err := e.c.Revoke(ctx, "test", Revocation{Fingerprint: quiet.FingerprintSHA256}); err != nil {
		t.Fatal(err)
	}
	// Every certificate recorded on a thing: listed by the serial numbers
	// recorded with them.
	if _, err := e.c.Revoke(ctx, "test", Revocation{ThingID: whole.ID, Reason: ReasonCessationOfOperation}); err != nil {
		t.Fatal(err)
	}
	crl, der := fetchCRL(t, srv, e.dca)
	if crl.Number.Cmp(empty.Number) <= 0 {
		t.Errorf("CRL number %v after %v", crl.Number, empty.Number)
	}
	if n := len(crl.RevokedCertificateEntries); n != 2 {
		t.Fatalf("%d CRL entries, want 2", n)
	}
	listed := map[string]int{}
	for _, en := range crl.RevokedCertificateEntries {
		listed[en.SerialNumber.Text(16)] = en.ReasonCode
	}
	if r, ok := listed[bad.Leaf.SerialNumber.Text(16)]; !ok || r != int(ReasonKeyCompromise) {
		t.Errorf("revoked certificate: listed %v, reason %d", ok, r)
	}
	if r, ok := listed[wholeCert.Leaf.SerialNumber.Text(16)]; !ok || r != int(ReasonCessationOfOperation) {
		t.Errorf("certificate of the revoked thing: listed %v, reason %d", ok, r)
	}

	resp, caPEM := get(t, srv, PathCACerts)
	if resp.Header.Get("Content-Type") != "application/pem-certificate-chain" || !bytes.Equal(caPEM, e.dca.CertificatesPEM()) {
		t.Fatalf("GET %s: %s", PathCACerts, resp.Header.Get("Content-Type"))
	}

	// openssl, a real relying party, agrees: with the CRL served over HTTP the
	// revoked certificate fails and the good one verifies.
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed; skipping the openssl CRL check")
	}
	dir := t.TempDir()
	files := map[string][]byte{"ca.pem": caPEM, "crl.der": der, "good.pem": pemOfDER(good.Chain[0]),
		"bad.pem": pemOfDER(bad.Chain[0]), "quiet.pem": pemOfDER(quiet.Chain[0])}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		return string(out), err
	}
	// openssl crl checks the signature with -CAfile and writes the PEM form.
	if out, err := run("crl", "-inform", "DER", "-in", filepath.Join(dir, "crl.der"), "-CAfile", filepath.Join(dir, "ca.pem"),
		"-out", filepath.Join(dir, "crl.pem")); err != nil || !strings.Contains(out, "verify OK") {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	verify := func(leaf string) (string, error) {
		return run("verify", "-crl_check", "-CAfile", filepath.Join(dir, "ca.pem"), "-CRLfile", filepath.Join(dir, "crl.pem"),
			"-purpose", "sslclient", filepath.Join(dir, leaf))
	}
	if out, err := verify("good.pem"); err != nil || !strings.Contains(out, ": OK") {
		t.Errorf("good certificate: %v\n%s", err, out)
	}
	if out, err := verify("bad.pem"); err == nil || !strings.Contains(out, "revoked") {
		t.Errorf("revoked certificate passed openssl verify -crl_check: %v\n%s", err, out)
	}
	if out, err := verify("quiet.pem"); err != nil {
		t.Errorf("certificate revoked by fingerprint only is not in the CRL, openssl accepts it: %v\n%s", err, out)
	}
}

// TestCRLRefreshedBeforeNextUpdate: a CRL is signed anew once half its
// lifetime has passed, so a relying party never holds one past nextUpdate.
func TestCRLRefreshedBeforeNextUpdate(t *testing.T) {
	e := newEnv(t)
	first, _, err := e.c.CRL(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.skew.Store(int64(defaultCRLLifetime/2 + time.Minute))
	second, next, err := e.c.CRL(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := x509.ParseRevocationList(first)
	b, _ := x509.ParseRevocationList(second)
	if b.Number.Cmp(a.Number) <= 0 || !b.ThisUpdate.After(a.ThisUpdate) || !next.Equal(b.NextUpdate) {
		t.Fatalf("not re-signed: %v %v then %v %v", a.Number, a.ThisUpdate, b.Number, b.ThisUpdate)
	}
}

func pemOfDER(der []byte) []byte { return (&pki.DeviceCert{Chain: [][]byte{der}}).ChainPEM() }
