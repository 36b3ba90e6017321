package broker

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/tokens"
)

// needTool finds a Debian tool; without it the test is skipped, except in
// CI (CI=true) where that is a failure.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: apt-get install %s", name, pkg)
		}
		t.Skipf("%s not found (apt-get install %s to run this test)", name, pkg)
	}
	return p
}

// mosquitto_pub and mosquitto_sub (Debian's mosquitto-clients) talk to the
// broker over TLS with a token as the password, MQTT 5 and 3.1.1.
func TestMosquittoClients(t *testing.T) {
	pub, sub := needTool(t, "mosquitto_pub", "mosquitto-clients"), needTool(t, "mosquitto_sub", "mosquitto-clients")
	e := newEnv(t, nil)
	cafile := filepath.Join(t.TempDir(), "ca.pem")
	certs := e.opts.Listeners[0].TLS.Certificates[0].Certificate[0]
	if err := os.WriteFile(cafile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.b.Addr("tls"))
	th, other := e.thing("T-100"), e.thing("T-100")
	svcToken := e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:sub:things/+/telemetry"}})
	run := func(bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		common := []string{"-h", host, "-p", port, "--cafile", cafile}
		out, err := exec.CommandContext(ctx, bin, append(common, args...)...).CombinedOutput()
		return string(out), err
	}
	for _, v := range []string{"mqttv5", "mqttv311"} {
		t.Run(v, func(t *testing.T) {
			topic := "things/" + th.ID + "/telemetry"
			if out, err := run(pub, "-V", v, "-i", th.ID, "-u", "device", "-P", e.thingToken(th), "-q", "1", "-r", "-t", topic, "-m", "21.5 "+v); err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, out)
			}
			out, err := run(sub, "-V", v, "-i", "svc-"+v, "-u", "svc", "-P", svcToken, "-q", "1", "-t", "things/+/telemetry", "-C", "1", "-W", "10")
			if err != nil || strings.TrimSpace(out) != "21.5 "+v {
				t.Errorf("mosquitto_sub got %q: %v", out, err)
			}
			out, err = run(sub, "-V", v, "-i", th.ID, "-u", "device", "-P", "forged", "-t", "things/#", "-C", "1", "-W", "5")
			if err == nil || !strings.Contains(strings.ToLower(out), "bad user name or password") {
				t.Errorf("forged token: %v %q", err, out)
			}
			out, err = run(sub, "-V", v, "-i", th.ID, "-u", "device", "-P", e.thingToken(th), "-t", "things/"+other.ID+"/commands/#", "-C", "1", "-W", "5")
			if !strings.Contains(out, "All subscription requests were denied") {
				t.Errorf("subscribing to another thing's commands: %v %q", err, out)
			}
		})
	}
}
