package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/browsertest"
)

// A newcomer's first hour: every ```sh block of the README and of docs/ runs,
// in order, on a fresh copy of the project, as a reader would type it, with
// the Debian tools the documents name. A block that cannot run as written
// says why in its doctest directive (see docStep), and the test reads that
// reason: there is no silent skip.
func TestDocsRunAsWritten(t *testing.T) {
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{"../README.md"}, docs...)
	for _, doc := range docs {
		name := strings.TrimPrefix(doc, "../")
		t.Run(name, func(t *testing.T) {
			text, err := os.ReadFile(doc)
			if err != nil {
				t.Fatal(err)
			}
			steps, err := parseDoc(string(text))
			if err != nil {
				t.Fatalf("%s:%v", name, err)
			}
			runDoc(t, name, steps)
		})
	}
}

func runDoc(t *testing.T, name string, steps []docStep) {
	runnable := false
	for _, s := range steps {
		runnable = runnable || !s.has("skip")
	}
	if !runnable {
		for _, s := range steps {
			t.Logf("%s:%d not run: %s", name, s.line, s.opts["reason"])
		}
		return
	}
	for _, tool := range []string{"bash", "curl", "jq", "openssl", "python3", "mosquitto_sub", "mosquitto_pub", "ldapsearch", "ldapwhoami"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI to run the documents' commands (scripts/test.sh installs it)", tool)
			}
			t.Skipf("%s not installed: the documents' commands need it", tool)
		}
	}
	waitPortsFree(t, name)
	r := &docRun{t: t, doc: name, dir: copyProject(t)}
	t.Cleanup(r.stopAll)
	for i, s := range steps {
		r.step(i, s)
	}
}

// docPorts are the default ports the documents' commands use (the platform,
// the broker, the gateway, the tutorial's upstreams: the cloud API and the
// music service; the directory's LDAPS and StartTLS listeners).
var docPorts = []string{"8443", "8883", "9443", "9000", "9100", "1636", "1389"}

// waitPortsFree waits until no other process listens on docPorts (a
// previous document's servers are ending), and fails with the reason when
// one still does after 30 s: the documents would talk to someone else's server.
func waitPortsFree(t *testing.T, doc string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, port := range docPorts {
		for {
			ln, err := net.Listen("tcp", "127.0.0.1:"+port)
			if err == nil {
				ln.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s uses port %s, which another process holds (%v): stop it, the documents run on the default ports", doc, port, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// docRun is one document being played in its own copy of the project.
type docRun struct {
	t          *testing.T
	doc, dir   string
	source     string // the file each block's shell reads first (source=)
	background []*exec.Cmd
	all        []*exec.Cmd // every process group started, stopped at the end
}

func (r *docRun) where(s docStep) string { return fmt.Sprintf("%s:%d", r.doc, s.line) }

func (r *docRun) step(i int, s docStep) {
	t := r.t
	switch {
	case s.has("browser"):
		r.browser(s)
		return
	case s.has("source"):
		r.source = s.opts["source"]
		return
	case s.has("skip"):
		t.Logf("%s not run: %s", r.where(s), s.opts["reason"])
		return
	}
	if s.has("stop") {
		r.stopBackground()
	}
	script := s.script
	if n, ok := s.opts["lines"]; ok {
		k, err := strconv.Atoi(n)
		if err != nil || k < 1 {
			t.Fatalf("%s: lines=%q is not a positive number", r.where(s), n)
		}
		lines := strings.SplitAfter(script, "\n")
		script = strings.Join(lines[:min(k, len(lines))], "")
		t.Logf("%s runs its first %d lines only: %s", r.where(s), k, s.opts["reason"])
	}
	if r.source != "" {
		script = fmt.Sprintf("if [ -f %[1]s ]; then . ./%[1]s; fi\n", r.source) + script
	}
	logPath := filepath.Join(r.dir, ".doctest", fmt.Sprintf("%02d.log", i))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// -e: a reader would notice a failing command; so does the test.
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = r.dir, docEnv(), logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.all = append(r.all, cmd)
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s\n--- the block:\n%s--- its output:\n%s", r.where(s), fmt.Sprintf(format, args...), script, output())
	}

	if s.has("background") {
		r.background = append(r.background, cmd)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if err := r.waitFor(s, output, exited); err != nil {
			fail("%v", err)
		}
		return
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Minute):
		stopGroup(cmd)
		fail("still running after 10 minutes")
	}
	switch {
	case s.has("fails") && err == nil:
		fail("ended with status 0; the document shows its last command failing")
	case !s.has("fails") && err != nil:
		fail("%v", err)
	}
	if err := r.waitFor(s, output, nil); err != nil {
		fail("%v", err)
	}
	if want, ok := s.opts["expect"]; ok && !strings.Contains(output(), want) {
		fail("the output does not contain %q", want)
	}
}

// waitFor waits for what the step's wait= and wait-output= name, up to three
// minutes (a first `go run` compiles), and fails early if the block exited.
func (r *docRun) waitFor(s docStep, output func() string, exited <-chan error) error {
	target, hasURL := s.opts["wait"]
	text, hasText := s.opts["wait-output"]
	if !hasURL && !hasText {
		return nil
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ok := true
		if hasURL {
			ok = answers(target)
		}
		if hasText {
			ok = ok && strings.Contains(output(), text)
		}
		if ok {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited (%v) before %s", err, waitingFor(s))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s within 3 minutes", waitingFor(s))
		}
	}
}

func waitingFor(s docStep) string {
	var w []string
	if u, ok := s.opts["wait"]; ok {
		w = append(w, "answer from "+u)
	}
	if o, ok := s.opts["wait-output"]; ok {
		w = append(w, fmt.Sprintf("output %q", o))
	}
	return strings.Join(w, " and ")
}

// answers reports whether target (an http(s) URL or tcp:HOST:PORT) answers.
func answers(target string) bool {
	if addr, ok := strings.CutPrefix(target, "tcp:"); ok {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	// Only whether something answers: the documents' own commands check the CA.
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(target)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// browser plays a person's step in Chromium.
func (r *docRun) browser(s docStep) {
	t := r.t
	switch s.opts["browser"] {
	case "pair":
		var dev struct {
			VerificationURI string `json:"verification_uri"`
			UserCode        string `json:"user_code"`
		}
		raw, err := os.ReadFile(filepath.Join(r.dir, s.opts["from"]))
		if err != nil || json.Unmarshal(raw, &dev) != nil || dev.VerificationURI == "" {
			t.Fatalf("%s: browser=pair needs from= a device authorization response: %v %s", r.where(s), err, raw)
		}
		button := s.opts["button"]
		if button == "" {
			button = "allow"
		}
		pairInBrowser(t, browsertest.New(t), browsertest.NewScreenshots(t), dev.VerificationURI, s.opts["user"], s.opts["password"], dev.UserCode, "", button)
	default:
		t.Fatalf("%s: unknown browser action %q", r.where(s), s.opts["browser"])
	}
}

func (r *docRun) stopBackground() {
	for _, c := range r.background {
		stopGroup(c)
	}
	r.background = nil
}

func (r *docRun) stopAll() {
	for _, c := range r.all {
		stopGroup(c)
	}
}

// stopGroup ends a block and everything it started (`cmd &` included): SIGTERM
// to its process group, SIGKILL after five seconds.
func stopGroup(c *exec.Cmd) {
	pgid := c.Process.Pid
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return
	}
	for range 50 {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// docEnv is the environment of a reader's shell: this machine's, without the
// THINGID_* settings of the test run.
func docEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "THINGID_") {
			env = append(env, kv)
		}
	}
	return env
}

// copyProject copies the project's files (tracked and new, as git lists them,
// with their changes) into a new directory: the fresh clone a reader starts from.
func copyProject(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", "..", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dir := t.TempDir()
	for name := range bytes.SplitSeq(bytes.TrimRight(out, "\x00"), []byte{0}) {
		if err := copyFile(filepath.Join("..", string(name)), filepath.Join(dir, string(name))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".doctest"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(from, to string) error {
	fi, err := os.Stat(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted in the work tree, not yet in the index
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
