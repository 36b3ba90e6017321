package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/browsertest"
)

// demoEnv puts the demo's listeners on free ports, so that it runs next to
// other tests (and a thingid serve on the default ports).
var demoEnv = []string{"THINGID_HTTP_ADDRESS=127.0.0.1:0", "THINGID_GATEWAY_ADDRESS=127.0.0.1:0", "THINGID_MQTT_TLS_ADDRESS=127.0.0.1:0",
	"THINGID_COAP_DTLSADDRESS=127.0.0.1:0"}

// `thingid demo --exit` plays the whole story and exits 0, every step ✓.
func TestDemoExit(t *testing.T) {
	home := filepath.Join(t.TempDir(), "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "--exit", "--home", home)
	cmd.Env = append(os.Environ(), demoEnv...)
	out, err := cmd.CombinedOutput()
	t.Logf("thingid demo --exit:\n%s", out)
	if err != nil {
		t.Fatalf("thingid demo --exit: %v", err)
	}
	steps := regexp.MustCompile(`(?m)^✓ `).FindAll(out, -1)
	if len(steps) != 30 || strings.Contains(string(out), "✗") || !strings.Contains(string(out), "Every step succeeded.") {
		t.Errorf("%d steps succeeded, want 30 and no failure", len(steps))
	}
	for _, say := range []string{`playing "Road trip" of bob`, "bob revoked the share", "stopped playing it",
		"the broker ended the kids' speaker's stream (MQTT 5 DISCONNECT 0x98: outside the allowed times", "403 policy_denied: outside the allowed times",
		"the audit log holds the refusals (policy.deny, rule kids-speaker)"} {
		if !strings.Contains(string(out), say) {
			t.Errorf("the demo does not say %q", say)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "thingid.log")); err != nil {
		t.Errorf("the data directory given is not kept: %v", err)
	}
}

// The demo refuses a data directory that is not fresh, with a message naming
// it and status 1, before starting anything.
func TestDemoRefusesUsedHome(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, "thingid.db"), []byte("not a demo"), 0o600)
	_, errOut, err := thingid(t, demoEnv, "", "demo", "--exit", "--home", home)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(errOut, home+" is not empty") {
		t.Errorf("demo on a used data directory: %v %q", err, errOut)
	}
}

// The speaker simulator fails with a clear message and status 1, without
// hanging, when the platform is unreachable, its certificate is missing or
// its buyer denies the pairing.
func TestSpeakerFailsClearly(t *testing.T) {
	sp := startStoryPlatform(t)
	b := issueBatch(t, sp.home, 3)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "https://" + closed.Addr().String()
	closed.Close()

	ended := func(t *testing.T, p *process, want ...string) {
		t.Helper()
		err := p.exit(t, 30*time.Second, "the speaker")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("the speaker ended with %v, want status 1; output:\n%s", err, p.out)
		}
		for _, w := range want {
			if !strings.Contains(p.out.String(), w) {
				t.Errorf("the speaker does not say %q:\n%s", w, p.out)
			}
		}
	}
	t.Run("platform unreachable", func(t *testing.T) {
		p, _ := sp.speaker(t, b, 0, unreachable)
		ended(t, p, "calling home to "+unreachable, "connection refused")
	})
	t.Run("certificate missing", func(t *testing.T) {
		os.Remove(b.cert(1))
		p, _ := sp.speaker(t, b, 1, sp.base)
		ended(t, p, "the factory identity is missing", b.cert(1))
	})
	t.Run("pairing denied", func(t *testing.T) {
		const name, password = "bob", "the owls are not what they seem"
		if code, body := sp.scim(t, "POST", "/Users", map[string]any{"schemas": []string{userSchema}, "userName": name, "password": password}); code != 201 {
			t.Fatalf("create %s: %d %v", name, code, body)
		}
		browser := browsertest.New(t)
		p, _ := sp.speaker(t, b, 2, sp.base)
		m, _ := p.out.find(t, userCodeLine, 0, 30*time.Second, "a user code on the speaker's display")
		pairInBrowser(t, browser, browsertest.NewScreenshots(t), m[1], name, password, m[2], b.serial(2), "deny")
		ended(t, p, "Pairing refused", "denied")
		if owners := sp.owners(t, b.thing(2)); len(owners) != 0 {
			t.Errorf("owners after a denied pairing: %v", owners)
		}
	})
}
