package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/secrets"
)

func newDeviceCA(t testing.TB) (*DeviceCA, string, secrets.Key) {
	t.Helper()
	dir := t.TempDir()
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadOrCreateCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	dca, err := ca.DeviceCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	return dca, dir, key
}

func makeCSR(t *testing.T, priv crypto.Signer, subject pkix.Name, uris ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: subject}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, priv)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestDeviceCAIsIntermediateAndPersists(t *testing.T) {
	dca, dir, key := newDeviceCA(t)
	c := dca.Cert
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.Subject.CommonName != "thingid device issuing CA" {
		t.Errorf("intermediate: IsCA %v MaxPathLen %d zero %v CN %q", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.Subject.CommonName)
	}
	if err := c.CheckSignatureFrom(dca.Root); err != nil {
		t.Errorf("intermediate not signed by the root: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, deviceCAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sealed key: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, deviceCAKeyFile)); !strings.Contains(string(b), "THINGID SEALED PRIVATE KEY") {
		t.Error("device CA key is not sealed")
	}
	ca, _ := LoadOrCreateCA(dir, key)
	again, err := ca.DeviceCA(dir, key)
	if err != nil || !again.Cert.Equal(c) {
		t.Fatalf("device CA not reloaded: %v", err)
	}
	// An intermediate from another root is refused rather than used.
	other := t.TempDir()
	otherCA, _ := LoadOrCreateCA(other, key)
	for _, f := range []string{deviceCACertFile, deviceCAKeyFile} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		os.WriteFile(filepath.Join(other, f), b, 0o600)
	}
	if _, err := otherCA.DeviceCA(other, key); err == nil {
		t.Error("an intermediate of another root was accepted")
	}
}

func TestIssueDevice(t *testing.T) {
	dca, _, _ := newDeviceCA(t)
	const id = "0190f3c4-7f4e-7a1b-9c2d-3e4f5a6b7c8d"
	dc, err := dca.IssueDevice(id, "SPK-000042", 0)
	if err != nil {
		t.Fatal(err)
	}
	l := dc.Leaf
	if l.Subject.SerialNumber != "SPK-000042" || l.Subject.CommonName != "SPK-000042" {
		t.Errorf("subject %v", l.Subject)
	}
	if got, ok := ThingID(l); !ok || got != id {
		t.Errorf("thing id from URI SAN %q %v", got, ok)
	}
	if len(l.ExtKeyUsage) != 1 || l.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || l.IsCA {
		t.Errorf("ext key usage %v IsCA %v", l.ExtKeyUsage, l.IsCA)
	}
	if k, ok := l.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", l.PublicKey)
	}
	if d := l.NotAfter.Sub(time.Now()); d < DefaultDeviceLifetime-time.Minute || d > DefaultDeviceLifetime {
		t.Errorf("lifetime %v", d)
	}
	if len(dc.Chain) != 2 || string(dc.Chain[1]) != string(dca.Cert.Raw) || len(dc.FingerprintSHA256) != 64 {
		t.Errorf("chain %d fingerprint %q", len(dc.Chain), dc.FingerprintSHA256)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(dca.Root)
	inter.AddCert(dca.Cert)
	if _, err := l.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("Go verification: %v", err)
	}
	short, err := dca.IssueDevice(id, "SPK-1", 24*time.Hour)
	if err != nil || short.Leaf.NotAfter.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("lifetime not applied: %v", err)
	}
}

func TestSignCSR(t *testing.T) {
	dca, _, _ := newDeviceCA(t)
	const id = "thing-1"
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	badSig := makeCSR(t, p256, pkix.Name{CommonName: "x"})
	badSig.Signature = append([]byte(nil), badSig.Signature...)
	badSig.Signature[len(badSig.Signature)-3] ^= 0xff
	// The public key of one CSR with the signature of another: the requester
	// does not hold the key it asks to have certified.
	swapped := makeCSR(t, p256, pkix.Name{CommonName: "x"})
	swapped.PublicKey = &p384.PublicKey
	cases := []struct {
		name     string
		csr      *x509.CertificateRequest
		thing    string
		serial   string
		lifetime time.Duration
		wantErr  string
	}{
		{"P-256", makeCSR(t, p256, pkix.Name{}), id, "SN-1", 0, ""},
		{"P-384", makeCSR(t, p384, pkix.Name{}), id, "SN-1", 0, ""},
		{"Ed25519", makeCSR(t, ed, pkix.Name{}), id, "SN-1", 0, ""},
		{"RSA 2048", makeCSR(t, rsa2048, pkix.Name{}), id, "SN-1", 0, ""},
		{"bad signature", badSig, id, "SN-1", 0, "signature"},
		{"key of another CSR", swapped, id, "SN-1", 0, "signature"},
		{"RSA 1024", makeCSR(t, rsa1024, pkix.Name{}), id, "SN-1", 0, "1024 bits"},
		{"P-224", makeCSR(t, p224, pkix.Name{}), id, "SN-1", 0, "P-224"},
		{"P-521", makeCSR(t, p521, pkix.Name{}), id, "SN-1", 0, "P-521"},
		{"empty serial", makeCSR(t, p256, pkix.Name{}), id, "", 0, "serial number is empty"},
		{"serial not PrintableString", makeCSR(t, p256, pkix.Name{}), id, "SN*1", 0, "serial number"},
		{"serial too long", makeCSR(t, p256, pkix.Name{}), id, strings.Repeat("9", 65), 0, "serial number"},
		{"empty thing id", makeCSR(t, p256, pkix.Name{}), "", "SN-1", 0, "thing id is empty"},
		{"thing id escaping the URN", makeCSR(t, p256, pkix.Name{}), "a/../b?x", "SN-1", 0, "thing id"},
		{"negative lifetime", makeCSR(t, p256, pkix.Name{}), id, "SN-1", -time.Hour, "negative"},
		{"outlives the CA", makeCSR(t, p256, pkix.Name{}), id, "SN-1", 50 * 365 * 24 * time.Hour, "outlive"},
		{"nil CSR", nil, id, "SN-1", 0, "missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dc, err := dca.SignCSR(c.csr, c.thing, c.serial, c.lifetime)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dc.Key != nil || dc.Leaf.Subject.SerialNumber != c.serial {
				t.Errorf("key %v subject %v", dc.Key, dc.Leaf.Subject)
			}
		})
	}
	if _, err := dca.SignCSR(makeCSR(t, rsa1024, pkix.Name{}), id, "SN-1", 0); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("weak RSA: %v, want ErrUnsupportedKey", err)
	}
	// The CSR cannot choose its names: subject and URI SAN are the platform's.
	evil := makeCSR(t, p256, pkix.Name{CommonName: "admin", SerialNumber: "OTHER-SN"}, ThingURIPrefix+"someone-else")
	dc, err := dca.SignCSR(evil, id, "SN-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ThingID(dc.Leaf); got != id || len(dc.Leaf.URIs) != 1 || dc.Leaf.Subject.CommonName != "SN-1" || dc.Leaf.Subject.SerialNumber != "SN-1" {
		t.Errorf("CSR names leaked into the certificate: %v %v", dc.Leaf.Subject, dc.Leaf.URIs)
	}
}

func TestParseCSRRefusesOtherPEM(t *testing.T) {
	if _, err := ParseCSR([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")); err == nil {
		t.Error("a certificate was parsed as a CSR")
	}
	if _, err := ParseCSR([]byte("garbage")); err == nil {
		t.Error("garbage was parsed as a CSR")
	}
}

func FuzzParseCSR(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, p256)
	f.Add(der)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err == nil && csr == nil {
			t.Fatal("nil CSR without an error")
		}
	})
}

// openssl, a real peer, verifies a device certificate through the intermediate
// to the root, for TLS client use.
func TestDeviceChainWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed; skipping the openssl verification")
	}
	dca, dir, _ := newDeviceCA(t)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	generated, err := dca.IssueDevice("thing-a", "SN-A", 0)
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]*DeviceCert{"generated": generated}
	for name, k := range map[string]crypto.Signer{"ed25519": ed, "rsa": rsa2048} {
		if certs[name], err = dca.SignCSR(makeCSR(t, k, pkix.Name{}), "thing-"+name, "SN-"+name, 0); err != nil {
			t.Fatal(err)
		}
	}
	inter := filepath.Join(dir, deviceCACertFile)
	for name, dc := range certs {
		leaf := filepath.Join(t.TempDir(), "device.pem")
		os.WriteFile(leaf, dc.ChainPEM(), 0o644)
		out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, CACertFile), "-untrusted", inter,
			"-purpose", "sslclient", leaf).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("%s: openssl verify: %v\n%s", name, err, out)
		}
		out, err = exec.Command(openssl, "x509", "-in", leaf, "-noout", "-subject", "-ext", "subjectAltName").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "serialNumber") || !strings.Contains(string(out), "URI:urn:thingid:thing:thing-") {
			t.Errorf("%s: openssl x509: %v\n%s", name, err, out)
		}
	}
	// Without the intermediate the device certificate does not chain: the root
	// signs only the intermediate.
	leaf := filepath.Join(t.TempDir(), "device.pem")
	os.WriteFile(leaf, generated.ChainPEM()[:len(pemOf(generated.Chain[0]))], 0o644)
	if out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, CACertFile), leaf).CombinedOutput(); err == nil {
		t.Errorf("verified without the intermediate:\n%s", out)
	}
}

func pemOf(der []byte) []byte {
	return (&DeviceCert{Chain: [][]byte{der}}).ChainPEM()
}
