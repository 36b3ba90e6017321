// Package e2e runs the real thingid binary as a separate process and talks to it
// over the network the way operators and clients do.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is the thingid executable built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "thingid-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "thingid")
	build := exec.Command("go", "build", "-o", binary, "../cmd/thingid")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot build thingid:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one running `thingid serve`.
type instance struct {
	cmd    *exec.Cmd
	home   string
	addr   string
	client *http.Client
	out    *bytes.Buffer
	trust  string // the line after "thingid is serving on": how to trust the platform CA
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs `thingid serve` on home and addr, with extra environment
// variables, and waits until /readyz answers.
func start(t *testing.T, home, addr string, env ...string) *instance {
	t.Helper()
	return startIn(t, "", home, addr, env...)
}

// startIn is start inside the network namespace netns (none if empty),
// where the node is reached by its address and checked as "localhost",
// the name its certificate carries.
func startIn(t *testing.T, netns, home, addr string, env ...string) *instance {
	t.Helper()
	in := &instance{home: home, addr: addr, out: &bytes.Buffer{}}
	in.cmd = exec.Command(binary, "serve", "--home", home, "--http-address", addr)
	if netns != "" {
		// ip netns exec replaces itself with thingid: the process is the node's.
		in.cmd = exec.Command("ip", append([]string{"netns", "exec", netns}, in.cmd.Args...)...)
	}
	// Tests run in parallel: the broker and the gateway listen on free ports of their own.
	in.cmd.Env = append(append(os.Environ(), "THINGID_LOG_FORMAT=json", "THINGID_MQTT_TLS_ADDRESS=127.0.0.1:0", "THINGID_GATEWAY_ADDRESS=127.0.0.1:0"), env...)
	stdout, _ := in.cmd.StdoutPipe()
	in.cmd.Stderr = in.out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if in.cmd.ProcessState == nil {
			in.cmd.Process.Kill()
			in.cmd.Wait()
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for serving := false; !serving; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("thingid exited before serving; log:\n%s", in.out)
			}
			serving = strings.HasPrefix(l, "thingid is serving on ")
		case <-deadline:
			t.Fatalf("thingid did not start within 30s; log:\n%s", in.out)
		}
	}
	select {
	case in.trust = <-lines:
	case <-deadline:
		t.Fatalf("thingid did not say how to trust its certificate; log:\n%s", in.out)
	}
	go func() {
		for range lines {
		}
	}()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(home, "pki", "ca.crt"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("platform CA not readable: %v", err)
	}
	tc := &tls.Config{RootCAs: pool}
	if netns != "" {
		tc.ServerName = "localhost"
	}
	in.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := in.client.Get(in.url("/readyz"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	in.chooseAdminPassword(t)
	return in
}

// chooseAdminPassword replaces the first administrator's one-time password by
// adminPassword over the HTTP API, as an operator must before the admin APIs
// accept Basic authentication. On a restart the one-time password is refused:
// it was changed by the first start.
func (in *instance) chooseAdminPassword(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(in.home, "admin-password.txt"))
	if errors.Is(err, fs.ErrNotExist) {
		return // a restart: the password was changed, and its file deleted
	}
	if err != nil {
		t.Fatal(err)
	}
	once := strings.TrimSpace(string(b))
	jar, _ := cookiejar.New(nil)
	c := *in.client
	c.Jar = jar
	post := func(path string, body any) (int, string) {
		raw, _ := json.Marshal(body)
		resp, err := c.Post(in.url(path), "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	code, body := post("/api/v1/signin", map[string]string{"userName": "admin", "password": once})
	if code == http.StatusUnauthorized {
		return
	}
	if code != http.StatusOK {
		t.Fatalf("sign-in with the one-time password: %d %s", code, body)
	}
	if !strings.Contains(body, `"mustChangePassword":true`) {
		return
	}
	if code, body := post("/api/v1/password", map[string]string{"currentPassword": once, "newPassword": in.adminPassword(t)}); code != http.StatusNoContent {
		t.Fatalf("changing the one-time password: %d %s", code, body)
	}
}

func (in *instance) url(path string) string { return "https://" + in.addr + path }

// adminPassword is the password start chose for the first administrator,
// derived from the data directory so that a restart knows it (the one-time
// password's file is deleted once it has been changed).
func (in *instance) adminPassword(*testing.T) string {
	return "chosen by e2e for " + filepath.Base(in.home)
}

// scim sends a SCIM request as the administrator and decodes the JSON answer.
func (in *instance) scim(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, in.url("/scim/v2"+path), rd)
	req.SetBasicAuth("admin", in.adminPassword(t))
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: status %d, body not JSON: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

const (
	userSchema   = "urn:ietf:params:scim:schemas:core:2.0:User"
	deviceSchema = "urn:ietf:params:scim:schemas:core:2.0:Device"
	thingExt     = "urn:thingid:params:scim:schemas:extension:thing:2.0:Device"
)

// Everything the server acknowledged before a SIGKILL is there after a restart.
func TestRestartAfterKillKeepsAcknowledgedWrites(t *testing.T) {
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr)
	var userIDs, deviceIDs []string
	for i := range 20 {
		code, body := in.scim(t, "POST", "/Users", map[string]any{
			"schemas": []string{userSchema}, "userName": fmt.Sprintf("user%02d", i),
		})
		if code != http.StatusCreated {
			t.Fatalf("create user: %d %v", code, body)
		}
		userIDs = append(userIDs, body["id"].(string))
		code, body = in.scim(t, "POST", "/Devices", map[string]any{
			"schemas":     []string{deviceSchema, thingExt},
			"displayName": fmt.Sprintf("speaker %d", i),
			thingExt: map[string]any{
				"serialNumber": fmt.Sprintf("SN-%04d", i), "manufacturer": "Acme", "model": "S1",
				"macAddresses": []string{fmt.Sprintf("02:00:00:00:00:%02x", i)},
			},
		})
		if code != http.StatusCreated {
			t.Fatalf("create device: %d %v", code, body)
		}
		deviceIDs = append(deviceIDs, body["id"].(string))
	}
	if err := in.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	in.cmd.Wait()

	again := start(t, home, addr)
	for _, id := range userIDs {
		if code, body := again.scim(t, "GET", "/Users/"+id, nil); code != 200 {
			t.Errorf("user %s lost after SIGKILL: %d %v", id, code, body)
		}
	}
	for _, id := range deviceIDs {
		if code, body := again.scim(t, "GET", "/Devices/"+id, nil); code != 200 {
			t.Errorf("device %s lost after SIGKILL: %d %v", id, code, body)
		}
	}
	// The first administrator is not created twice, and its password still works.
	if code, _ := again.scim(t, "GET", "/Users?filter="+strings.ReplaceAll(`userName eq "admin"`, " ", "%20"), nil); code != 200 {
		t.Errorf("admin cannot sign in after restart: %d", code)
	}

	// SIGTERM shuts down gracefully with exit status 0.
	if err := again.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- again.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("graceful shutdown ended with %v; log:\n%s", err, again.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no shutdown within 20s of SIGINT")
	}
	if !strings.Contains(again.out.String(), `"msg":"stopped"`) {
		t.Errorf("no structured 'stopped' log line:\n%s", again.out)
	}
}

// The data directory's secrets are readable by the owner only.
func TestFirstStartSecretsAreOwnerOnly(t *testing.T) {
	home := t.TempDir()
	start(t, home, freeAddr(t))
	// (admin-password.txt is 0600 too, and gone once start changed the
	// password: internal/server's TestOneTimePasswordFileDeletedOnceChanged.)
	for _, f := range []string{"master.key", "thingid.db", "pki/ca.key.sealed", "pki/server.key.sealed"} {
		fi, err := os.Stat(filepath.Join(home, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v; want no access for group and others", f, fi.Mode().Perm())
		}
	}
}

// curl, a real TLS client, trusts the server through the platform CA alone.
func TestCurlTrustsPlatformCA(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is required in CI")
		}
		t.Skip("curl not installed")
	}
	home, addr := t.TempDir(), freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	in := start(t, home, addr)
	// thingid serve says which CA to trust, with a curl command that works
	// as printed.
	_, command, ok := strings.Cut(in.trust, "for example: ")
	if !ok || !strings.HasPrefix(command, "curl --cacert "+filepath.Join(home, "pki", "ca.crt")+" ") {
		t.Fatalf("thingid serve printed %q after the serving line", in.trust)
	}
	out, err := exec.Command("sh", "-c", command+" --fail -sS").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"ok"`) {
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
	out, err = exec.Command(curl, "-sS", "--fail", "--cacert", filepath.Join(home, "pki", "ca.crt"),
		"https://localhost:"+port+"/metrics").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "thingid_http_requests_total") {
		t.Fatalf("metrics: %v\n%s", err, out)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
