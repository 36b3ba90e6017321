package e2e

import (
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// A device from a factory batch calls home with curl over mutual TLS: its
// certificate alone gets it a token bound to that certificate (RFC 8705), and
// the call-home endpoint tells it it is not paired yet.
func TestFactoryDeviceCallsHomeWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is required in CI")
		}
		t.Skip("curl not installed")
	}
	home, addr := t.TempDir(), freeAddr(t)
	start(t, home, addr)
	out := filepath.Join(t.TempDir(), "batch")
	if stdout, errOut, err := thingid(t, nil, "", "--home", home, "factory", "issue", "--model", "S1", "--manufacturer", "Acme", "--count", "2", "--out", out); err != nil {
		t.Fatalf("factory issue: %v\n%s\n%s", err, stdout, errOut)
	}
	f, err := os.Open(filepath.Join(out, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 3 {
		t.Fatalf("manifest: %d rows, %v", len(rows), err)
	}
	_, port, _ := net.SplitHostPort(addr)
	base := "https://localhost:" + port
	dev := func(row []string) []string {
		dir := filepath.Join(out, row[1])
		return []string{"-sS", "--cacert", filepath.Join(home, "pki", "ca.crt"),
			"--cert", filepath.Join(dir, "device.pem"), "--key", filepath.Join(dir, "device.key")}
	}
	run := func(args ...string) string {
		o, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, o)
		}
		return string(o)
	}
	body := run(append(dev(rows[1]), "--data-urlencode", "grant_type=client_credentials", "--data-urlencode", "client_id="+rows[1][0], base+"/oauth2/token")...)
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("token over mutual TLS: %s", body)
	}
	parts := strings.Split(tok.AccessToken, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(payload), `"x5t#S256"`) {
		t.Errorf("the token is not bound to the certificate: %s", payload)
	}
	// Another device's certificate does not open this device's client.
	if body := run(append(dev(rows[2]), "--data-urlencode", "grant_type=client_credentials", "--data-urlencode", "client_id="+rows[1][0], base+"/oauth2/token")...); !strings.Contains(body, "invalid_client") {
		t.Errorf("another device's certificate got: %s", body)
	}
	if body := run(append(dev(rows[1]), base+"/api/v1/things/self")...); !strings.Contains(body, `"paired":false`) || !strings.Contains(body, rows[1][0]) {
		t.Errorf("call home: %s", body)
	}

	// The CLI revokes the first device's certificate in its own process; its
	// event reaches the running server through the database (SQLite's event
	// log), well before the server's 30 s reload would find it.
	if stdout, errOut, err := thingid(t, nil, "", "--home", home, "certs", "revoke", "--thing", rows[1][0], "--reason", "keyCompromise"); err != nil || !strings.Contains(stdout, "revoked") {
		t.Fatalf("certs revoke: %v\n%s\n%s", err, stdout, errOut)
	}
	status := func(row []string) string {
		return run(append(dev(row), "-o", "/dev/null", "-w", "%{http_code}", base+"/api/v1/things/self")...)
	}
	for deadline := time.Now().Add(5 * time.Second); status(rows[1]) != "401"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a certificate revoked by the CLI is still accepted by the running server after 5 s")
		}
	}
	if got := status(rows[2]); got != "200" {
		t.Errorf("the other device's call home after the revocation: %s", got)
	}
}
