package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	testIssuer   = "https://id.example.com"
	testAudience = "urn:thingid:gateway"
)

var quiet = slog.New(slog.DiscardHandler)

// clock is a settable test clock shared by the keys, the verifier and the gateway.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a real gateway in front of a real upstream: a SQLite store, the
// platform's keys, issuer and verifier on an event bus, a routes directory,
// and the gateway behind a TLS listener that asks for client certificates.
type env struct {
	t        testing.TB
	st       store.Store
	bus      *events.Bus
	clk      *clock
	keys     *tokens.Keys
	issuer   *tokens.Issuer
	verifier *tokens.Verifier
	upstream *httptest.Server
	dir      string
	reg      *prometheus.Registry
	g        *Gateway
	srv      *httptest.Server
}

// newEnv starts everything with routes (YAML) in routes.yaml; tweak edits
// the gateway's options before New.
func newEnv(t testing.TB, routes string, tweak ...func(*Options)) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, bus: events.New(), clk: &clock{t: time.Now().Truncate(time.Second)}, dir: t.TempDir(), reg: prometheus.NewRegistry()}
	var mk secrets.Key
	rand.Read(mk[:])
	e.keys, err = tokens.NewKeys(context.Background(), st, tokens.KeysConfig{MasterKey: mk, Bus: e.bus, Now: e.clk.Now, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.keys.Close)
	if e.issuer, err = tokens.NewIssuer(e.keys, testIssuer); err != nil {
		t.Fatal(err)
	}
	e.verifier, err = tokens.NewVerifier(e.keys, tokens.VerifierConfig{Issuer: testIssuer, Bus: e.bus, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.verifier.Close)
	e.upstream = httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(e.upstream.Close)
	e.writeRoutes("routes.yaml", routes)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		RoutesDir: e.dir, Audience: testAudience, PublicURL: "https://" + ln.Addr().String(),
		Verifier: e.verifier, Issuer: e.issuer, Bus: e.bus, Replay: st, Things: st,
		Registerer: e.reg, Log: quiet, Now: e.clk.Now, PollInterval: 20 * time.Millisecond,
	}
	for _, f := range tweak {
		f(&opts)
	}
	e.g, err = New(opts)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(e.g.Close)
	e.srv = httptest.NewUnstartedServer(e.g)
	e.srv.Listener.Close()
	e.srv.Listener = ln
	e.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	e.srv.EnableHTTP2 = true
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// writeRoutes writes a routes file, with UPSTREAM replaced by the upstream's URL.
func (e *env) writeRoutes(name, body string) {
	e.t.Helper()
	body = strings.ReplaceAll(body, "UPSTREAM", e.upstream.URL)
	tmp := filepath.Join(e.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, name)); err != nil {
		e.t.Fatal(err)
	}
}

// echoed is what the upstream saw.
type echoed struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	RawPath string      `json:"rawPath"`
	Query   string      `json:"query"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
}

func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", "echo")
	_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header})
}

// token issues an access token for the gateway's audience with scopes;
// edit changes the claims.
func (e *env) token(scopes string, edit ...func(*tokens.Claims)) string {
	e.t.Helper()
	now := e.clk.Now()
	c := tokens.Claims{
		Subject: "user-alice", Audience: []string{testAudience}, ClientID: "client-app", Scope: strings.Fields(scopes),
		IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), GrantID: "grant-" + rand.Text(), ThingID: "",
	}
	for _, f := range edit {
		f(&c)
	}
	tok, err := e.issuer.AccessToken(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// revoke publishes the grant.revoke event oauth publishes.
func (e *env) revoke(gid string) {
	e.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: gid, Actor: "test",
		Details: map[string]string{"exp": strconv.FormatInt(e.clk.Now().Add(time.Hour).Unix(), 10)}})
}

// do sends a request through the gateway; header is name, value pairs.
func (e *env) do(c *http.Client, method, path string, header ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return e.send(c, req)
}

func (e *env) send(c *http.Client, req *http.Request) (*http.Response, string) {
	e.t.Helper()
	if c == nil {
		c = e.srv.Client()
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// upstreamSaw decodes the echo of a proxied request.
func upstreamSaw(t testing.TB, body string) echoed {
	t.Helper()
	var got echoed
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("not the upstream's echo: %v: %s", err, body)
	}
	return got
}

// problem decodes an RFC 9457 answer.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Error  string `json:"error"`
}

func problemOf(t testing.TB, resp *http.Response, body string) problem {
	t.Helper()
	var p problem
	if resp.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(body), &p) != nil || p.Status != resp.StatusCode {
		t.Fatalf("not a problem answer: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return p
}

// proofFor is a DPoP proof by h for method and url, bound to the access
// token at; extra are claim name, value pairs to add or change.
func proofFor(t testing.TB, h *dpoptest.Holder, now time.Time, method, url, at string, extra ...any) string {
	t.Helper()
	claims := dpoptest.Claims(method, url, now)
	claims["ath"] = dpoptest.ATH(at)
	for i := 0; i+1 < len(extra); i += 2 {
		claims[extra[i].(string)] = extra[i+1]
	}
	return h.Proof(t, claims)
}

// counter reads a counter or gauge of the registry with the given labels.
func (e *env) counter(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting: %s", what)
}

// needTool skips without an external program, except in CI where it fails.
func needTool(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI but missing: install Debian's %s package", path, pkg)
		}
		t.Skipf("skipped: %s not found (apt-get install %s to run it)", path, pkg)
	}
}
