package demo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/thingid/thingid/examples/smart-speaker/speaker"
	"github.com/thingid/thingid/internal/config"
)

// lockedBuffer is the demo's output, read by the test while the demo writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func loopbackOptions(home string, out io.Writer) Options {
	return Options{Home: home, HTTPAddress: "127.0.0.1:0", GatewayAddress: "127.0.0.1:0", BrokerAddress: "127.0.0.1:0",
		CoAPAddress: "127.0.0.1:0", Log: config.Log{Level: "info", Format: "text"}, Exit: true, Out: out}
}

// The whole story on a platform in this process: every step succeeds, in
// order, one line each, and the data directory given is kept.
func TestStory(t *testing.T) {
	home := filepath.Join(t.TempDir(), "demo")
	out := &lockedBuffer{}
	if err := Run(context.Background(), loopbackOptions(home, out)); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	got := out.String()
	t.Log("\n" + got)
	if strings.Contains(got, "✗") {
		t.Errorf("a step failed:\n%s", got)
	}
	var steps []string
	for _, m := range regexp.MustCompile(`(?m)^✓ (.{14}) `).FindAllStringSubmatch(got, -1) {
		steps = append(steps, strings.TrimSpace(m[1]))
	}
	want := []string{"platform"}
	for _, st := range (&story{}).steps() {
		want = append(want, st.name)
	}
	if strings.Join(steps, ",") != strings.Join(want, ",") {
		t.Errorf("steps\n%v\nwant\n%v", steps, want)
	}
	for _, line := range []string{"Go to https://localhost:", "after 5 calls the gateway answered 429", "bob was asked (request_submitted)",
		`playing "Road trip" of bob`, "bob revoked the share", "stopped playing it", "401 from the gateway",
		"called home over CoAP on coaps://127.0.0.1:", "with its pre-shared key and posted to /mqtt/things/",
		"emma registered", "the broker ended the kids' speaker's stream (MQTT 5 DISCONNECT 0x98: outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00)",
		"403 policy_denied: outside the allowed times", "the audit log holds the refusals (policy.deny, rule kids-speaker) at the doors broker, gateway", "Every step succeeded."} {
		if !strings.Contains(got, line) {
			t.Errorf("the story does not say %q", line)
		}
	}
	if _, err := os.Stat(filepath.Join(home, logFile)); err != nil {
		t.Errorf("the data directory given is not kept: %v", err)
	}
}

// Without --home the demo uses a temporary directory and removes it when
// every step succeeded; with an unusable --home it refuses before starting.
func TestFreshHome(t *testing.T) {
	dir, temporary, err := freshHome("")
	if err != nil || !temporary {
		t.Fatalf("temporary home: %q %v %v", dir, temporary, err)
	}
	os.RemoveAll(dir)

	used := t.TempDir()
	os.WriteFile(filepath.Join(used, "thingid.db"), []byte("x"), 0o600)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	for name, home := range map[string]string{"not empty": used, "a file": file} {
		err := Run(context.Background(), loopbackOptions(home, io.Discard))
		if err == nil || !strings.Contains(err.Error(), home) {
			t.Errorf("%s: %v, want an error naming %s", name, err, home)
		}
	}
	if ents, _ := os.ReadDir(used); len(ents) != 1 {
		t.Errorf("the demo wrote into a data directory it refused: %v", ents)
	}
}

// A configured address that is taken is replaced by a free port, and the
// demo says so; an address that cannot be had at all is an error naming the
// setting.
func TestListen(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ln, note, err := listen(busy.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if !strings.Contains(note, busy.Addr().String()+" is in use") || ln.Addr().String() == busy.Addr().String() {
		t.Errorf("busy address: %q on %s", note, ln.Addr())
	}
	out := &lockedBuffer{}
	opts := loopbackOptions(t.TempDir(), out)
	opts.GatewayAddress = "192.0.2.1:9443" // TEST-NET-1: not an address of this machine
	err = Run(context.Background(), opts)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "platform" || !strings.Contains(err.Error(), "gateway.address") {
		t.Errorf("unusable gateway address: %v", err)
	}
	if !strings.Contains(out.String(), "✗ platform") {
		t.Errorf("no failed platform step in:\n%s", out)
	}
}

// cast is a running platform with a factory batch and a registered user,
// for stories that go wrong.
type cast struct {
	pl    *platform
	setup *story
}

func newCast(t *testing.T) *cast {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	opts := loopbackOptions(t.TempDir(), io.Discard)
	pl, err := startPlatform(context.Background(), opts, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pl.stop(); err != nil {
			t.Errorf("stopping the platform: %v", err)
		}
	})
	s := &story{con: &console{w: io.Discard}, log: log, ep: pl.endpoints, platform: pl.Platform}
	if err := s.walk(context.Background(), []step{{"factory", s.factory}, {"registration", s.registration}}); err != nil {
		t.Fatal(err)
	}
	return &cast{pl: pl, setup: s}
}

// story is a new story of the nth speaker of the batch, told into out.
func (c *cast) story(t *testing.T, n int, out io.Writer) *story {
	s := &story{con: &console{w: out}, log: c.setup.log, ep: c.pl.endpoints, platform: c.pl.Platform, decision: "allow",
		user: c.setup.user, devices: c.setup.devices[n : n+1]}
	t.Cleanup(s.close)
	return s
}

// The demo fails with a clear message, and without waiting for a timeout,
// when the platform is unreachable, a certificate is missing or the user
// denies the pairing.
func TestStoryGoesWrong(t *testing.T) {
	c := newCast(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "https://" + closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name    string
		device  int
		prepare func(s *story)
		step    string
		want    []string
		is      error
	}{
		{name: "platform unreachable", device: 0, step: "call home",
			prepare: func(s *story) { s.ep.URL = unreachable },
			want:    []string{"the speaker stopped before it called home", "calling home to " + unreachable, "connection refused"}},
		{name: "certificate missing", device: 1, step: "call home",
			prepare: func(s *story) { os.Remove(s.devices[0].CertFile) },
			want:    []string{"the speaker stopped before it called home", "device.pem", "no such file"}},
		{name: "pairing denied", device: 2, step: "pairing",
			prepare: func(s *story) { s.decision = "deny" },
			want:    []string{`chose deny ("Request denied")`, "the speaker stopped before its tokens"},
			is:      speaker.ErrPairingDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &lockedBuffer{}
			s := c.story(t, tc.device, out)
			tc.prepare(s)
			err := s.walk(context.Background(), []step{{"call home", s.callHome}, {"pairing", s.pairing}})
			t.Log(err)
			var se *StepError
			if !errors.As(err, &se) || se.Step != tc.step {
				t.Fatalf("error %v, want the step %q to fail", err, tc.step)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("the error is not %v: %v", tc.is, err)
			}
			if !strings.Contains(out.String(), "✗ "+tc.step) {
				t.Errorf("no ✗ line for %s in:\n%s", tc.step, out)
			}
		})
	}
	t.Run("registration unreachable", func(t *testing.T) {
		s := c.story(t, 0, io.Discard)
		s.ep.URL = unreachable
		s.user = newPerson(s.ep, "bob", "a long enough passphrase here")
		err := s.user.register(context.Background())
		if err == nil || !strings.Contains(err.Error(), unreachable+"/api/v1/register") {
			t.Errorf("registration against an unreachable platform: %v", err)
		}
	})
}
