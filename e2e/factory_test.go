package e2e

import (
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The factory CLI issues devices with certificates from the platform's device CA
// into a running platform's data directory; openssl verifies the chain and SCIM
// sees each device with its certificate.
func TestFactoryIssue(t *testing.T) {
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr)
	out := filepath.Join(t.TempDir(), "batch")
	stdout, errOut, err := thingid(t, nil, "", "--home", home, "factory", "issue", "--model", "S1", "--manufacturer", "Acme", "--count", "20", "--out", out)
	if err != nil || !strings.Contains(stdout, "20 issued") {
		t.Fatalf("factory issue: %v\n%s\n%s", err, stdout, errOut)
	}
	// Running it again resumes and does nothing.
	stdout, _, err = thingid(t, nil, "", "--home", home, "factory", "issue", "--model", "S1", "--manufacturer", "Acme", "--count", "20", "--out", out)
	if err != nil || !strings.Contains(stdout, "0 issued, 20 already done") {
		t.Errorf("re-run: %v %s", err, stdout)
	}
	f, err := os.Open(filepath.Join(out, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 21 {
		t.Fatalf("manifest: %d rows, %v", len(rows), err)
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		serial := rows[1][1]
		o, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(home, "pki", "ca.crt"),
			"-untrusted", filepath.Join(home, "pki", "device-ca.crt"), "-purpose", "sslclient",
			filepath.Join(out, serial, "device.pem")).CombinedOutput()
		if err != nil || !strings.Contains(string(o), ": OK") {
			t.Errorf("openssl verify: %v %s", err, o)
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("openssl is required in CI")
	}
	code, body := in.scim(t, "GET", "/Devices/"+rows[1][0], nil)
	if code != 200 {
		t.Fatalf("SCIM does not see the device: %d %v", code, body)
	}
	ext, _ := body[thingExt].(map[string]any)
	certs, _ := ext["certificates"].([]any)
	if len(certs) != 1 || !strings.Contains(strings.ToLower(toJSON(certs[0])), strings.ToLower(rows[1][3])) {
		t.Errorf("device lacks its certificate reference: %v (manifest fingerprint %s)", ext, rows[1][3])
	}
}
