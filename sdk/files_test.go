package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate naming thing for key, as PEM.
func selfSigned(t *testing.T, key crypto.Signer, thing string) []byte {
	t.Helper()
	u, _ := url.Parse(ThingURIPrefix + thing)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: thing}, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	b, err := marshalKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadPairFormatsAndMistakes(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	cert := write("device.pem", selfSigned(t, ec, "thing-1"))
	for name, k := range map[string][]byte{
		"PKCS#8": keyPEM(t, ec),
		"SEC 1":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
	} {
		pair, err := loadPair(cert, write("k", k))
		if err != nil || ThingID(pair.Leaf) != "thing-1" {
			t.Errorf("%s: %v", name, err)
		}
	}
	rsaCert := write("rsa.pem", selfSigned(t, rsaKey, "thing-2"))
	if _, err := loadPair(rsaCert, write("rsa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))); err != nil {
		t.Errorf("PKCS#1: %v", err)
	}
	for name, tc := range map[string]struct {
		cert, key, want string
	}{
		"missing certificate": {filepath.Join(dir, "nope.pem"), write("k1", keyPEM(t, ec)), "device.pem of the factory batch"},
		"missing key":         {cert, filepath.Join(dir, "nope.key"), "device.key of the factory batch"},
		"key of another":      {cert, write("k2", keyPEM(t, other)), "does not belong"},
		"encrypted key":       {cert, write("k3", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})), "encrypted keys are not supported"},
		"not PEM":             {cert, write("k4", []byte("hello")), "no PEM block"},
		"key as certificate":  {write("c5", keyPEM(t, ec)), write("k5", keyPEM(t, ec)), "no PEM CERTIFICATE"},
	} {
		if _, err := loadPair(tc.cert, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// Every state a crash can leave a renewal in ends with a matching pair.
func TestFinishRenewalAfterACrash(t *testing.T) {
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name                       string
		keyNext, certNext, keyDone bool // files present after the crash
		wantNew                    bool
	}{
		{"before the request", true, false, false, false},
		{"certificate staged", true, true, false, true},
		{"key installed, certificate staged", false, true, true, true},
		{"nothing pending", false, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
			os.WriteFile(certFile, selfSigned(t, oldKey, "old"), 0o644)
			os.WriteFile(keyFile, keyPEM(t, oldKey), 0o600)
			if tc.keyNext {
				os.WriteFile(pendingKey(keyFile), keyPEM(t, newKey), 0o600)
			}
			if tc.keyDone {
				os.WriteFile(keyFile, keyPEM(t, newKey), 0o600)
			}
			if tc.certNext {
				os.WriteFile(pendingCert(certFile), selfSigned(t, newKey, "new"), 0o644)
			}
			if err := finishRenewal(certFile, keyFile); err != nil {
				t.Fatal(err)
			}
			pair, err := loadPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if got := ThingID(pair.Leaf) == "new"; got != tc.wantNew {
				t.Errorf("new pair installed: %v, want %v", got, tc.wantNew)
			}
			for _, f := range []string{pendingKey(keyFile), pendingCert(certFile)} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("%s left behind", f)
				}
			}
		})
	}
	// A staged certificate that is not the staged key's is discarded.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
	os.WriteFile(certFile, selfSigned(t, oldKey, "old"), 0o644)
	os.WriteFile(keyFile, keyPEM(t, oldKey), 0o600)
	os.WriteFile(pendingKey(keyFile), keyPEM(t, newKey), 0o600)
	os.WriteFile(pendingCert(certFile), selfSigned(t, oldKey, "stray"), 0o644)
	if err := finishRenewal(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if pair, err := loadPair(certFile, keyFile); err != nil || ThingID(pair.Leaf) != "old" {
		t.Errorf("mismatched staged files: %v", err)
	}
}
