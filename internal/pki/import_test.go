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
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/secrets"
)

// caFiles writes a CA certificate and its key (in keyType's PEM form) to dir.
type caFiles struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certFile string
	keyFile  string
}

func makeCA(t *testing.T, dir, name string, key crypto.Signer, parent *caFiles, mutate func(*x509.Certificate)) *caFiles {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"Example Corp"}, CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(15 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if mutate != nil {
		mutate(tmpl)
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	f := &caFiles{cert: cert, key: key, certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key")}
	os.WriteFile(f.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(f.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	return f
}

func p256(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func masterKey(t *testing.T, dir string) secrets.Key {
	k, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestImportRoot(t *testing.T) {
	src := t.TempDir()
	root := makeCA(t, src, "corp-root", p256(t), nil, nil)
	home := t.TempDir()
	key := masterKey(t, home)
	dir := filepath.Join(home, "pki")
	imp := Import{CertFile: root.certFile, KeyFile: root.keyFile}
	ca, dca, err := Open(dir, key, imp)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(root.cert) || !dca.Root.Equal(root.cert) || dca.Cert.CheckSignatureFrom(root.cert) != nil {
		t.Fatal("the issuing CA is not under the imported root")
	}
	// Kept sealed like a generated key, never in clear.
	if b, _ := os.ReadFile(filepath.Join(dir, caKeyFile)); !strings.Contains(string(b), "THINGID SEALED PRIVATE KEY") {
		t.Error("imported key not sealed")
	}
	// Restarting with the same files, or with none, keeps the same CAs.
	for _, again := range []Import{imp, {}} {
		ca2, dca2, err := Open(dir, key, again)
		if err != nil || !ca2.Cert.Equal(ca.Cert) || !dca2.Cert.Equal(dca.Cert) {
			t.Fatalf("reopen with %+v: %v", again, err)
		}
	}
	// Configuring another root later is an error, not a silent switch.
	other := makeCA(t, src, "other-root", p256(t), nil, nil)
	if _, _, err := Open(dir, key, Import{CertFile: other.certFile, KeyFile: other.keyFile}); err == nil || !strings.Contains(err.Error(), "already runs with") {
		t.Fatalf("another root: %v", err)
	}
	// Device certificates chain to the imported root, for openssl too.
	dc, err := dca.IssueDevice("thing-1", "SN-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, root.certFile, dca.Cert.Raw, dc.Chain[0])
}

func TestImportRootAndIssuing(t *testing.T) {
	src := t.TempDir()
	root := makeCA(t, src, "corp-root", p256(t), nil, nil)
	issuing := makeCA(t, src, "corp-devices", p256(t), root, func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
	home := t.TempDir()
	key := masterKey(t, home)
	imp := Import{CertFile: root.certFile, KeyFile: root.keyFile, IssuingCertFile: issuing.certFile, IssuingKeyFile: issuing.keyFile}
	_, dca, err := Open(filepath.Join(home, "pki"), key, imp)
	if err != nil {
		t.Fatal(err)
	}
	if !dca.Cert.Equal(issuing.cert) {
		t.Fatal("the imported issuing CA is not used")
	}
	dc, err := dca.IssueDevice("thing-1", "SN-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, root.certFile, issuing.cert.Raw, dc.Chain[0])
}

// TestImportKeyForms: the key formats openssl and other CAs write.
func TestImportKeyForms(t *testing.T) {
	ec := p256(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	for name, c := range map[string]struct {
		key crypto.Signer
		pem []byte
	}{
		"SEC 1 EC":                {ec, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		"SEC 1 after EC params":   {ec, append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)},
		"PKCS#1 RSA":              {rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		"PKCS#8 Ed25519":          {edKey, pkcs8PEM(t, edKey)},
		"PKCS#8 EC with comments": {ec, append([]byte("Bag Attributes\n  friendlyName: ca\n"), pkcs8PEM(t, ec)...)},
	} {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			root := makeCA(t, src, "root", c.key, nil, nil)
			os.WriteFile(root.keyFile, c.pem, 0o600)
			home := t.TempDir()
			ca, dca, err := Open(filepath.Join(home, "pki"), masterKey(t, home), Import{CertFile: root.certFile, KeyFile: root.keyFile})
			if err != nil {
				t.Fatal(err)
			}
			if dca.Cert.CheckSignatureFrom(ca.Cert) != nil {
				t.Fatal("issuing CA not signed by the imported key")
			}
		})
	}
}

func pkcs8PEM(t *testing.T, k crypto.Signer) []byte {
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
}

func TestImportRefuses(t *testing.T) {
	src := t.TempDir()
	root := makeCA(t, src, "root", p256(t), nil, nil)
	otherKey := makeCA(t, src, "other", p256(t), nil, nil).keyFile
	leaf := makeCA(t, src, "leaf", p256(t), root, func(c *x509.Certificate) {
		c.IsCA, c.KeyUsage = false, x509.KeyUsageDigitalSignature
	})
	noSign := makeCA(t, src, "nosign", p256(t), nil, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	expired := makeCA(t, src, "expired", p256(t), nil, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	pathZero := makeCA(t, src, "pathzero", p256(t), nil, func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakRoot := makeCA(t, src, "weak", weak, nil, nil)
	foreignIssuing := makeCA(t, src, "foreign", p256(t), makeCA(t, src, "root2", p256(t), nil, nil), nil)
	issuingNoCRL := makeCA(t, src, "nocrl", p256(t), root, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign })
	encrypted := filepath.Join(src, "encrypted.key")
	os.WriteFile(encrypted, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600)
	legacy := filepath.Join(src, "legacy.key")
	os.WriteFile(legacy, []byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600)
	certAsKey := root.certFile

	for name, c := range map[string]struct {
		imp  Import
		want string
	}{
		"key of another CA":       {Import{CertFile: root.certFile, KeyFile: otherKey}, "is not the key"},
		"not a CA":                {Import{CertFile: leaf.certFile, KeyFile: leaf.keyFile}, "not a CA"},
		"no keyCertSign":          {Import{CertFile: noSign.certFile, KeyFile: noSign.keyFile}, "key usage"},
		"expired":                 {Import{CertFile: expired.certFile, KeyFile: expired.keyFile}, "valid only from"},
		"path length 0":           {Import{CertFile: pathZero.certFile, KeyFile: pathZero.keyFile}, "path length 0"},
		"weak RSA":                {Import{CertFile: weakRoot.certFile, KeyFile: weakRoot.keyFile}, "1024 bits"},
		"encrypted PKCS#8":        {Import{CertFile: root.certFile, KeyFile: encrypted}, "encrypted"},
		"encrypted legacy PEM":    {Import{CertFile: root.certFile, KeyFile: legacy}, "encrypted"},
		"a certificate as key":    {Import{CertFile: root.certFile, KeyFile: certAsKey}, "want PRIVATE KEY"},
		"missing file":            {Import{CertFile: filepath.Join(src, "nope.crt"), KeyFile: root.keyFile}, "no such file"},
		"key without certificate": {Import{KeyFile: root.keyFile}, "together"},
		"issuing without root":    {Import{IssuingCertFile: root.certFile, IssuingKeyFile: root.keyFile}, "root"},
		"issuing of another root": {Import{CertFile: root.certFile, KeyFile: root.keyFile, IssuingCertFile: foreignIssuing.certFile, IssuingKeyFile: foreignIssuing.keyFile}, "not issued by"},
		"issuing without cRLSign": {Import{CertFile: root.certFile, KeyFile: root.keyFile, IssuingCertFile: issuingNoCRL.certFile, IssuingKeyFile: issuingNoCRL.keyFile}, "key usage"},
	} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			dir := filepath.Join(home, "pki")
			_, _, err := Open(dir, masterKey(t, home), c.imp)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, c.want)
			}
			t.Log(err)
			// Nothing half-imported is left to be picked up next time.
			if _, err := os.Stat(filepath.Join(dir, CACertFile)); err == nil {
				t.Errorf("a refused root was kept in %s", dir)
			}
		})
	}
}

// TestConcurrentCreation: processes starting at once in one data directory
// (here goroutines, each with its own lock file descriptor, which flock
// treats like separate processes) all end with the same CA.
func TestConcurrentCreation(t *testing.T) {
	home := t.TempDir()
	key := masterKey(t, home)
	dir := filepath.Join(home, "pki")
	const n = 8
	roots := make([]*x509.Certificate, n)
	issuing := make([]*x509.Certificate, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			var (
				ca  *CA
				dca *DeviceCA
				err error
			)
			if i%2 == 0 {
				ca, dca, err = Open(dir, key, Import{})
			} else if ca, err = LoadOrCreateCA(dir, key); err == nil {
				dca, err = ca.DeviceCA(dir, key)
			}
			if err != nil {
				t.Error(err)
				return
			}
			roots[i], issuing[i] = ca.Cert, dca.Cert
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if roots[i] == nil || !roots[i].Equal(roots[0]) || !issuing[i].Equal(issuing[0]) {
			t.Fatalf("caller %d got another CA than caller 0", i)
		}
	}
}

func TestDeviceCAOptions(t *testing.T) {
	dca, _, _ := newDeviceCA(t)
	dca.Lifetime = 48 * time.Hour
	dca.CRLURL = "http://crl.example.com/pki/crl"
	dc, err := dca.IssueDevice("thing-1", "SN-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(dc.Leaf.NotAfter); d > 48*time.Hour || d < 47*time.Hour {
		t.Errorf("lifetime %v, want the CA's 48h", d)
	}
	if dps := dc.Leaf.CRLDistributionPoints; len(dps) != 1 || dps[0] != dca.CRLURL {
		t.Errorf("CRL distribution points %v", dps)
	}
	if dc, _ := dca.IssueDevice("thing-1", "SN-1", time.Hour); time.Until(dc.Leaf.NotAfter) > time.Hour {
		t.Error("an explicit lifetime is not used")
	}
	var pems int
	for rest := dca.CertificatesPEM(); ; pems++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
	}
	if pems != 2 {
		t.Errorf("CertificatesPEM holds %d certificates, want root and issuing CA", pems)
	}
}

func TestCreateCRL(t *testing.T) {
	dca, _, _ := newDeviceCA(t)
	dc, _ := dca.IssueDevice("thing-1", "SN-1", 0)
	now := time.Now().UTC().Truncate(time.Second)
	der, err := dca.CreateCRL([]x509.RevocationListEntry{{SerialNumber: dc.Leaf.SerialNumber, RevocationTime: now, ReasonCode: 1}},
		big.NewInt(7), now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if crl.CheckSignatureFrom(dca.Cert) != nil || crl.Number.Int64() != 7 || !crl.NextUpdate.Equal(now.Add(time.Hour)) ||
		len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].ReasonCode != 1 {
		t.Fatalf("CRL %+v", crl)
	}
}

func FuzzParseCertificatePEM(f *testing.F) {
	dca, _, _ := newDeviceCA(f)
	f.Add(dca.CertificatesPEM())
	f.Add(certsPEM(dca.Cert.Raw))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCertificatePEM(data)
		if (err == nil) == (c == nil) {
			t.Fatalf("certificate %v with error %v", c, err)
		}
		first, err := ParseLeafPEM(data)
		if (err == nil) == (first == nil) || (c != nil && !first.Equal(c)) {
			t.Fatalf("first certificate %v with error %v", first, err)
		}
	})
}

func TestParseLeafPEM(t *testing.T) {
	dca, _, _ := newDeviceCA(t)
	dc, _ := dca.IssueDevice("thing-1", "SN-1", 0)
	if c, err := ParseLeafPEM(append([]byte("subject=CN=SN-1\n"), dc.ChainPEM()...)); err != nil || !c.Equal(dc.Leaf) {
		t.Fatalf("bundle: %v", err)
	}
	if _, err := ParseCertificatePEM(dc.ChainPEM()); err == nil {
		t.Fatal("ParseCertificatePEM took a bundle")
	}
	if _, err := ParseLeafPEM([]byte("no PEM here")); err == nil {
		t.Fatal("no PEM accepted")
	}
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	p8, _ := x509.MarshalPKCS8PrivateKey(ec)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePrivateKeyPEM(data)
		if (err == nil) == (k == nil) {
			t.Fatalf("key %v with error %v", k, err)
		}
	})
}

// opensslVerify has openssl check leaf through issuing to the root in rootFile.
func opensslVerify(t *testing.T, rootFile string, issuing, leaf []byte) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI")
		}
		t.Log("openssl not installed; skipping the openssl verification")
		return
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "issuing.pem"), certsPEM(issuing), 0o600)
	os.WriteFile(filepath.Join(dir, "leaf.pem"), certsPEM(leaf), 0o600)
	out, err := exec.Command(openssl, "verify", "-CAfile", rootFile, "-untrusted", filepath.Join(dir, "issuing.pem"),
		"-purpose", "sslclient", filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}
