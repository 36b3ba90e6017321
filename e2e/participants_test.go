package e2e

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The participants of the smart-speaker story around a running thingid:
// the speaker simulator as a process, the manufacturer's cloud API, and
// what the tests need to watch them.

// tool is the path of a command-line tool; without it the test is skipped,
// except in CI (CI=true), where that is a failure.
func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI but missing: install Debian's %s package", name, debianPackage)
		}
		t.Skipf("skipped: %s not found (apt-get install %s to run it)", name, debianPackage)
	}
	return path
}

// freeAddrs returns n distinct free loopback addresses (all held open
// until chosen, so that no two are the same port).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

var (
	examplesMu sync.Mutex
	examples   = map[string]string{} // built programs by name
)

// exampleBinary builds examples/<name> once, next to the thingid binary.
func exampleBinary(t *testing.T, name string) string {
	t.Helper()
	examplesMu.Lock()
	defer examplesMu.Unlock()
	if bin, ok := examples[name]; ok {
		return bin
	}
	bin := filepath.Join(filepath.Dir(binary), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/"+name).CombinedOutput(); err != nil {
		t.Fatalf("building examples/%s: %v\n%s", name, err, out)
	}
	examples[name] = bin
	return bin
}

// lines collects a process's output line by line as it comes, for the test
// to wait on.
type lines struct {
	mu    sync.Mutex
	all   []string
	more  chan struct{} // closed and replaced at every line, and at the end
	ended bool
}

func collect(r io.Reader) *lines {
	l := &lines{more: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.all = append(l.all, sc.Text())
			close(l.more)
			l.more = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.ended = true
		close(l.more)
		l.mu.Unlock()
	}()
	return l
}

// drained waits until the reader has ended and every line is in l: a
// process's last lines may still be in the scanner when it has exited.
func (l *lines) drained() {
	for {
		l.mu.Lock()
		ended, more := l.ended, l.more
		l.mu.Unlock()
		if ended {
			return
		}
		<-more
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

func (l *lines) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// from returns the lines from index i on.
func (l *lines) from(i int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all[min(i, len(l.all)):]...)
}

// find waits until a line at index from or later matches re, for at most
// timeout, and returns its submatches and index; what says what the test
// waited for when it fails.
func (l *lines) find(t *testing.T, re *regexp.Regexp, from int, timeout time.Duration, what string) ([]string, int) {
	t.Helper()
	m, i, err := l.await(re, from, time.Now().Add(timeout))
	if err != nil {
		t.Fatalf("%s waiting for %s; the output:\n%s", err, what, l)
	}
	return m, i
}

func (l *lines) await(re *regexp.Regexp, from int, deadline time.Time) ([]string, int, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for i := from; ; {
		l.mu.Lock()
		for ; i < len(l.all); i++ {
			if m := re.FindStringSubmatch(l.all[i]); m != nil {
				l.mu.Unlock()
				return m, i, nil
			}
		}
		more, ended := l.more, l.ended
		l.mu.Unlock()
		if ended {
			return nil, i, fmt.Errorf("the process ended")
		}
		select {
		case <-more:
		case <-timer.C:
			return nil, i, fmt.Errorf("deadline passed")
		}
	}
}

// process is a participant running as a process, its stdout and stderr
// collected together.
type process struct {
	cmd  *exec.Cmd
	out  *lines
	done chan struct{}
	err  error // how it ended, once done is closed
}

func startProcess(t *testing.T, path string, args ...string) *process {
	t.Helper()
	pr, pw := io.Pipe()
	p := &process{cmd: exec.Command(path, args...), out: collect(pr), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// exit waits at most timeout for the process to end and returns how it ended.
func (p *process) exit(t *testing.T, timeout time.Duration, what string) error {
	t.Helper()
	select {
	case <-p.done:
		p.out.drained()
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not end within %s; its output:\n%s", what, timeout, p.out)
		return nil
	}
}

// speakerEvent matches a line the simulator prints for an event of step:
// "15:04:05 step message".
func speakerEvent(step string) *regexp.Regexp {
	return regexp.MustCompile(`^\d\d:\d\d:\d\d ` + regexp.QuoteMeta(step) + `\s+(.*)$`)
}

// userCodeLine is the simulator's display asking for pairing.
var userCodeLine = regexp.MustCompile(`┃ Go to (\S+) and enter ([A-Z]{4}-[A-Z]{4})`)

// call is a request the cloud API received through the gateway.
type call struct {
	Subject, Thing, Scope, Token string
}

// cloudAPI is the manufacturer's API behind the gateway: it answers the
// playlists of whoever the gateway says is calling, and records the calls.
type cloudAPI struct {
	*httptest.Server
	mu    sync.Mutex
	calls []call
}

func newCloudAPI(t *testing.T) *cloudAPI {
	c := &cloudAPI{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl := call{Subject: r.Header.Get("X-Thingid-Subject"), Thing: r.Header.Get("X-Thingid-Thing"), Scope: r.Header.Get("X-Thingid-Scope")}
		cl.Token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c.mu.Lock()
		c.calls = append(c.calls, cl)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"owner": cl.Subject, "playlists": []string{"Morning", "Focus"}})
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *cloudAPI) received() []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]call(nil), c.calls...)
}

// batch is a factory batch's manifest: thing id and serial per device.
type batch struct {
	dir  string
	rows [][]string
}

// issueBatch runs `thingid factory issue` on home.
func issueBatch(t *testing.T, home string, count int) batch {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "batch")
	if out, errOut, err := thingid(t, nil, "", "--home", home, "factory", "issue", "--model", "Speaker-1", "--manufacturer", "Acme",
		"--count", fmt.Sprint(count), "--out", dir); err != nil {
		t.Fatalf("factory issue: %v\n%s\n%s", err, out, errOut)
	}
	f, err := os.Open(filepath.Join(dir, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != count+1 {
		t.Fatalf("manifest: %d rows, %v", len(rows), err)
	}
	return batch{dir: dir, rows: rows[1:]}
}

func (b batch) thing(i int) string  { return b.rows[i][0] }
func (b batch) serial(i int) string { return b.rows[i][1] }
func (b batch) cert(i int) string   { return filepath.Join(b.dir, b.serial(i), "device.pem") }
func (b batch) key(i int) string    { return filepath.Join(b.dir, b.serial(i), "device.key") }

// deviceClient is an HTTPS client presenting the device's certificate.
func (in *instance) deviceClient(t *testing.T, certFile, keyFile string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := in.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// claims decodes a JWT's payload (its signature is the platform's business).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return c
}

// thumbprint is the x5t#S256 of a PEM certificate file (RFC 8705 §3.1).
func thumbprint(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM certificate", certFile)
	}
	sum := sha256.Sum256(block.Bytes)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
