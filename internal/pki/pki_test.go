package pki

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/secrets"
)

func TestCAAndServerCertificate(t *testing.T) {
	dir := t.TempDir()
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadOrCreateCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	cert, err := ca.ServerCertificate(dir, hosts, key)
	if err != nil {
		t.Fatal(err)
	}
	// Reopening gives the same CA and reuses the still-valid server certificate.
	ca2, err := LoadOrCreateCA(dir, key)
	if err != nil || !ca2.Cert.Equal(ca.Cert) {
		t.Fatalf("CA not reloaded: %v", err)
	}
	cert2, err := ca2.ServerCertificate(dir, hosts, key)
	if err != nil || !cert2.Leaf.Equal(cert.Leaf) {
		t.Fatalf("server certificate not reused: %v", err)
	}
	// A new host name forces a new certificate that names it.
	cert3, err := ca2.ServerCertificate(dir, append(hosts, "id.example.com"), key)
	if err != nil || cert3.Leaf.Equal(cert.Leaf) || cert3.Leaf.VerifyHostname("id.example.com") != nil {
		t.Fatalf("certificate not reissued for the new host: %v", err)
	}
	for _, name := range []string{caKeyFile, serverKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v err %v, want 0600", name, fi.Mode().Perm(), err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if strings.Contains(string(b), "PRIVATE KEY-----\nMI") && !strings.Contains(string(b), "SEALED") {
			t.Errorf("%s holds a key in clear", name)
		}
	}
	// A different master key cannot open the CA key.
	other, _ := secrets.LoadOrCreate(t.TempDir(), "")
	if _, err := LoadOrCreateCA(dir, other); err == nil {
		t.Error("CA opened with the wrong master key")
	}

	// openssl, a real peer, agrees that the chain and the host names are right.
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed; skipping the openssl verification")
	}
	out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, CACertFile),
		"-verify_hostname", "localhost", "-purpose", "sslserver", filepath.Join(dir, serverCertFile)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}
