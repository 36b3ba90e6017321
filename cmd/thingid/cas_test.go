package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// run executes one of the commands on the data directory home.
func run(t *testing.T, home string, mk func(*globals) *cobra.Command, args ...string) (string, error) {
	t.Helper()
	return runGlobals(t, &globals{home: home}, mk, args...)
}

// runGlobals is run with the shared flags in g.
func runGlobals(t *testing.T, g *globals, mk func(*globals) *cobra.Command, args ...string) (string, error) {
	t.Helper()
	cmd := mk(g)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCAsAndRevocationCommands(t *testing.T) {
	home, src := t.TempDir(), t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme Device CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	caFile := filepath.Join(src, "acme.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)

	out, err := run(t, home, newCAs, "add", "--name", "Acme", "--cert", caFile, "--manufacturer", "Acme", "--model", "T-1000",
		"--serial-from", "commonName", "--attributes", `{"color":"red"}`)
	id := regexp.MustCompile(`id: (\S+)`).FindStringSubmatch(out)
	if err != nil || id == nil {
		t.Fatalf("cas add: %v\n%s", err, out)
	}
	if out, err := run(t, home, newCAs, "add", "--name", "Acme", "--cert", caFile, "--manufacturer", "Acme", "--model", "T-1000"); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("added twice: %v %s", err, out)
	}
	if _, err := run(t, home, newCAs, "add", "--name", "x", "--cert", caFile, "--manufacturer", "A", "--model", "B", "--serial-from", "mac"); err == nil || !strings.Contains(err.Error(), "--serial-from") {
		t.Errorf("bad --serial-from: %v", err)
	}
	if out, err := run(t, home, newCAs, "list"); err != nil || !strings.Contains(out, id[1]) || !strings.Contains(out, "CN=Acme Device CA") {
		t.Errorf("cas list: %v\n%s", err, out)
	}

	// A factory device of the platform, its PEM bundle on disk.
	cfg := config.Default()
	cfg.Home = home
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	th, err := p.Identity.CreateThing(context.Background(), "test", &store.Thing{SerialNumber: "SPK-CLI"})
	if err != nil {
		t.Fatal(err)
	}
	_, dca, err := p.PKI()
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dca.IssueDevice(th.ID, "SPK-CLI", 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	devFile := filepath.Join(src, "device.pem")
	os.WriteFile(devFile, dc.ChainPEM(), 0o600)

	out, err = run(t, home, newCerts, "revoke", "--cert", devFile, "--reason", "keyCompromise")
	if err != nil || !strings.Contains(out, "revoked "+dc.FingerprintSHA256) || !strings.Contains(out, "thing "+th.ID) || !strings.Contains(out, "listed in the CRL") {
		t.Fatalf("certs revoke: %v\n%s", err, out)
	}
	if out, err := run(t, home, newCerts, "revoke", "--fingerprint", dc.FingerprintSHA256); err != nil || !strings.Contains(out, "already revoked") {
		t.Errorf("revoked twice: %v %s", err, out)
	}
	if _, err := run(t, home, newCerts, "revoke", "--cert", devFile, "--reason", "certificateHold"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Errorf("bad --reason: %v", err)
	}
	if _, err := run(t, home, newCerts, "revoke"); err == nil || !strings.Contains(err.Error(), "--thing") {
		t.Errorf("nothing to revoke: %v", err)
	}

	if out, err := run(t, home, newCAs, "delete", id[1]); err != nil || !strings.Contains(out, "deleted") {
		t.Errorf("cas delete: %v %s", err, out)
	}
	if _, err := run(t, home, newCAs, "delete", id[1]); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("deleted twice: %v", err)
	}
}
