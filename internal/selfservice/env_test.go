package selfservice

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// env is a real HTTP server with the real identity service on a real SQLite store.
type env struct {
	srv    *httptest.Server
	h      *Handler
	store  store.Store
	client *http.Client // keeps cookies like a browser
}

// testOptions are enabled options generous enough that only the throttling test
// is throttled.
func testOptions() Options {
	return Options{
		Enabled:       true,
		SigningKey:    testKey,
		Logger:        slog.New(slog.DiscardHandler),
		RatePerMinute: 60000,
		Burst:         1000,
	}
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return startEnv(t, opts, identity.New(st, nil, password.Policy{}), st)
}

// newBareEnv serves requests that must be refused before any identity is
// touched: it has no identity service, so reaching one fails the test.
func newBareEnv(t testing.TB, opts Options) *env {
	t.Helper()
	return startEnv(t, opts, nil, nil)
}

func startEnv(t testing.TB, opts Options, users Users, st store.Store) *env {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if opts.BaseURL == "" {
		opts.BaseURL = srv.URL
	}
	h := New(users, opts)
	h.Register(mux)
	jar, _ := cookiejar.New(nil)
	return &env{srv: srv, h: h, store: st, client: &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // tests look at the 303 itself
		},
	}}
}

func (e *env) postJSON(t *testing.T, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/register", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return e.do(t, req)
}

func (e *env) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *env) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	return e.do(t, req)
}

func (e *env) userCount(t *testing.T) int {
	t.Helper()
	_, n, err := e.store.ListUsers(context.Background(), store.Query{})
	if err != nil {
		t.Fatalf("counting users: %v", err)
	}
	return n
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Fatalf("problem status %d differs from HTTP status %d", p.Status, resp.StatusCode)
	}
	return p
}
