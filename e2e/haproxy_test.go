package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// logFile prints a log file's content.
type logFile string

func (f logFile) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

// HAProxy in TCP mode with send-proxy-v2 in front of HTTPS and MQTT over
// TLS: mutual TLS passes through to thingid, and the client's own address
// (curl and paho on 127.0.0.3, HAProxy on 127.0.0.2) is what the access
// log, the audit records and the broker see. HAProxy's health checks of
// /readyz come as LOCAL headers, the proxy's own connections.
func TestBehindHAProxy(t *testing.T) {
	haproxy, curl := tool(t, "haproxy", "haproxy"), tool(t, "curl", "curl")
	home, addr, mqttAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	in := start(t, home, addr, "THINGID_CONNECTIONS_PROXYPROTOCOL_TRUSTED=127.0.0.2",
		"THINGID_MQTT_TLS_ADDRESS="+mqttAddr, "THINGID_MQTT_TLS_ANONYMOUS=true")
	ca := filepath.Join(home, "pki", "ca.crt")

	front, mqttFront := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 1m
  timeout server 1m
frontend https
  bind %s
  default_backend thingid
backend thingid
  option httpchk GET /readyz
  http-check expect status 200
  server node1 %s send-proxy-v2 source 127.0.0.2 check check-ssl verify none check-send-proxy inter 500ms
frontend mqtt
  bind %s
  default_backend broker
backend broker
  server node1 %s send-proxy-v2 source 127.0.0.2
`, front, addr, mqttFront, mqttAddr)), 0o600)
	hp := exec.Command(haproxy, "-db", "-f", cfg)
	hpLog, err := os.Create(filepath.Join(t.TempDir(), "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	hp.Stdout, hp.Stderr = hpLog, hpLog
	hpOut := logFile(hpLog.Name())
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hp.Process.Kill(); hp.Wait() })

	_, port, _ := net.SplitHostPort(front)
	base := "https://localhost:" + port
	run := func(args ...string) string {
		t.Helper()
		o, err := exec.Command(curl, append([]string{"-sS", "--cacert", ca}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s\nHAProxy:\n%s", args, err, o, hpOut)
		}
		return string(o)
	}
	// Through HAProxy once its check of /readyz passed.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		o, _ := exec.Command(curl, "-s", "--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", base+"/readyz").CombinedOutput()
		if string(o) == "200" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through HAProxy: %s\nHAProxy:\n%s\nthingid:\n%s", o, hpOut, in.out)
		}
	}

	// Mutual TLS through the TCP passthrough: a factory device's certificate
	// gets a token bound to it, and calls home.
	out := filepath.Join(t.TempDir(), "batch")
	if stdout, errOut, err := thingid(t, nil, "", "--home", home, "factory", "issue", "--model", "S1", "--manufacturer", "Acme", "--count", "1", "--out", out); err != nil {
		t.Fatalf("factory issue: %v\n%s\n%s", err, stdout, errOut)
	}
	f, err := os.Open(filepath.Join(out, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 2 {
		t.Fatalf("manifest: %d rows, %v", len(rows), err)
	}
	thing, dir := rows[1][0], filepath.Join(out, rows[1][1])
	device := []string{"--interface", "127.0.0.3", "--cert", filepath.Join(dir, "device.pem"), "--key", filepath.Join(dir, "device.key")}
	body := run(append(device, "--data-urlencode", "grant_type=client_credentials", "--data-urlencode", "client_id="+thing, base+"/oauth2/token")...)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal([]byte(body), &tok); tok.AccessToken == "" {
		t.Fatalf("token over mutual TLS through HAProxy: %s", body)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1])
	if !strings.Contains(string(payload), `"x5t#S256"`) {
		t.Errorf("the token is not bound to the device's certificate: %s", payload)
	}
	if body := run(append(device, base+"/api/v1/things/self")...); !strings.Contains(body, thing) {
		t.Errorf("call home through HAProxy: %s", body)
	}

	// A failed sign-in through HAProxy is audited with the client's address.
	jar := filepath.Join(t.TempDir(), "cookies")
	page := run("--interface", "127.0.0.3", "-c", jar, base+"/signin")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the sign-in page:\n%s", page)
	}
	run("--interface", "127.0.0.3", "-b", jar, "-o", "/dev/null", "--data-urlencode", "csrf="+m[1],
		"--data-urlencode", "userName=nobody", "--data-urlencode", "password=not the password", base+"/signin")
	audit := run("-u", "admin:"+in.adminPassword(t), "https://"+addr+"/api/v1/admin/audit?action="+url.QueryEscape("session.signin-failed"))
	if !strings.Contains(audit, `"ip":"127.0.0.3"`) {
		t.Errorf("the failed sign-in's audit record does not name the client 127.0.0.3:\n%s", audit)
	}

	// MQTT over TLS through HAProxy: the broker sees the client's address.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	conn, err := tls.DialWithDialer(&d, "tcp", mqttFront, &tls.Config{RootCAs: in.client.Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	mq := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := mq.Connect(ctx, &paho.Connect{ClientID: "behind-haproxy", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("MQTT through HAProxy: %v\nHAProxy:\n%s", err, hpOut)
	}
	clients := run("-u", "admin:"+in.adminPassword(t), "https://"+addr+"/api/v1/admin/mqtt/clients")
	if !regexp.MustCompile(`"clientId":"behind-haproxy"[^}]*"remote":"127\.0\.0\.3:`).MatchString(clients) {
		t.Errorf("the broker does not see the client's address 127.0.0.3:\n%s", clients)
	}
	mq.Disconnect(&paho.Disconnect{})

	// Straight to thingid: from the proxy's address without a header, and
	// from elsewhere with one (curl's own PROXY v1), both refused; curl's
	// header from the proxy's address is read.
	direct := "https://localhost:" + strings.Split(addr, ":")[1] + "/readyz"
	for _, args := range [][]string{
		{"--interface", "127.0.0.2", direct},
		{"--interface", "127.0.0.3", "--haproxy-protocol", direct},
	} {
		if o, err := exec.Command(curl, append([]string{"-sS", "--cacert", ca}, args...)...).CombinedOutput(); err == nil {
			t.Errorf("curl %v got an answer: %s", args, o)
		}
	}
	if got := run("--interface", "127.0.0.2", "--haproxy-protocol", direct); !strings.Contains(got, "ready") {
		t.Errorf("curl with a PROXY v1 header from the trusted address: %s", got)
	}

	// The access log names the client, and the health checks the proxy.
	in.cmd.Process.Signal(syscall.SIGTERM)
	in.cmd.Wait()
	var callHome, check bool
	sc := bufio.NewScanner(strings.NewReader(in.out.String()))
	for sc.Scan() {
		var line struct{ Msg, Path, Remote string }
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "http" {
			continue
		}
		switch {
		case line.Path == "/api/v1/things/self":
			callHome = true
			if !strings.HasPrefix(line.Remote, "127.0.0.3:") {
				t.Errorf("the access log names %s for the call home, want the client 127.0.0.3", line.Remote)
			}
		case line.Path == "/readyz" && strings.HasPrefix(line.Remote, "127.0.0.2:"):
			check = true
		}
	}
	if !callHome || !check {
		t.Errorf("the access log lacks the call home (%v) or HAProxy's checks from 127.0.0.2 (%v):\n%s", callHome, check, in.out)
	}
}
