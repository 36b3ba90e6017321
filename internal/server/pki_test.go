package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

// TestPKIIsServed: the CA certificates and the CRL are public, the
// manufacturer CA API is for administrators only.
func TestPKIIsServed(t *testing.T) {
	r := serve(t)
	code, body := r.get(t, certauth.PathCACerts, nil)
	kept, _ := os.ReadFile(filepath.Join(r.p.Config.Home, "pki", "ca.crt"))
	if code != http.StatusOK || !strings.HasPrefix(body, string(kept)) || strings.Count(body, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("GET %s: %d\n%s", certauth.PathCACerts, code, body)
	}
	code, body = r.get(t, certauth.PathCRL, nil)
	crl, err := x509.ParseRevocationList([]byte(body))
	if code != http.StatusOK || err != nil {
		t.Fatalf("GET %s: %d %v", certauth.PathCRL, code, err)
	}
	_, dca, err := r.p.PKI()
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(dca.Cert); err != nil {
		t.Fatalf("CRL not signed by the device issuing CA: %v", err)
	}
	if dca.CRLURL != r.p.Config.HTTP.PublicURL+certauth.PathCRL {
		t.Errorf("CRL URL %q", dca.CRLURL)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme Device CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	spec, _ := json.Marshal(certauth.CASpec{Name: "Acme", Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Template: store.ProvisioningTemplate{Manufacturer: "Acme", Model: "T-1000", SerialFrom: certauth.SerialFromSerialNumber}})
	post := func(auth func(*http.Request)) int {
		req, _ := http.NewRequest("POST", r.base+certauth.PathCAs, bytes.NewReader(spec))
		req.Header.Set("Content-Type", "application/json")
		if auth != nil {
			auth(req)
		}
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous registration of a CA: %d", code)
	}
	if code := post(basic("admin", adminPassword(t, r))); code != http.StatusCreated {
		t.Fatalf("administrator registering a CA: %d", code)
	}
	if code, body := r.get(t, certauth.PathCAs, basic("admin", adminPassword(t, r))); code != http.StatusOK || !strings.Contains(body, "Acme Device CA") {
		t.Fatalf("list: %d %s", code, body)
	}
}

// TestPKIImportFromConfig: pki.caCertFile/caKeyFile put the configured root
// in place on first use; another one configured later is refused.
func TestPKIImportFromConfig(t *testing.T) {
	src := t.TempDir()
	write := func(name string) (certFile, keyFile string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true, IsCA: true}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		sec1, _ := x509.MarshalECPrivateKey(key)
		certFile, keyFile = filepath.Join(src, name+".crt"), filepath.Join(src, name+".key")
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), 0o600)
		return
	}
	open := func(home, certFile, keyFile string) *Platform {
		cfg := config.Default()
		cfg.Home = home
		cfg.PKI.CACertFile, cfg.PKI.CAKeyFile = certFile, keyFile
		cfg.PKI.DeviceCertLifetime = config.Duration(2 * time.Hour)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		p, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	home := t.TempDir()
	certFile, keyFile := write("Corp Root")
	root, dca, err := open(home, certFile, keyFile).PKI()
	if err != nil {
		t.Fatal(err)
	}
	if root.Cert.Subject.CommonName != "Corp Root" || dca.Lifetime != 2*time.Hour {
		t.Fatalf("root %q lifetime %v", root.Cert.Subject, dca.Lifetime)
	}
	otherCert, otherKey := write("Other Root")
	if _, _, err := open(home, otherCert, otherKey).PKI(); err == nil || !strings.Contains(err.Error(), "pki.caCertFile") {
		t.Fatalf("another root configured later: %v", err)
	}
}
