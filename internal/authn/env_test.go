package authn

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

const (
	alicePassword = "purple monkey dishwasher"
	doraPassword  = "correct stapler battery horse"
)

var (
	testKey      = []byte("0123456789abcdef0123456789abcdef")
	testTokenKey = []byte("fedcba9876543210fedcba9876543210")
)

// env is a real HTTPS server with the real identity service on a real SQLite
// store: alice (active), dora (disabled) and root (an administrator with an
// API token).
type env struct {
	srv        *httptest.Server
	s          *Sessions
	store      store.Store
	ids        *identity.Service
	alice      *store.User
	dora       *store.User
	adminToken string

	mu     sync.Mutex
	offset time.Duration // added to the clock of s
}

func testOptions() SessionOptions {
	return SessionOptions{
		Key:    testKey,
		Logger: slog.New(slog.DiscardHandler),
		// Generous: only the throttling test is throttled.
		IPAttemptsPerMinute: 6000,
		IPBurst:             1000,
	}
}

func newEnv(t testing.TB, opts SessionOptions) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	sst, ok := st.(SessionStore)
	if !ok {
		t.Fatalf("the SQLite store %T does not keep sessions and counters", st)
	}
	ctx := context.Background()
	ids := identity.New(st, nil, password.Policy{})
	e := &env{store: st, ids: ids}
	mk := func(name, pw string, status store.Status) *store.User {
		u, err := ids.CreateUser(ctx, "test", &store.User{UserName: name, Status: status,
			Emails: []store.MultiValue{{Value: name + "@example.org"}}}, pw)
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		return u
	}
	e.alice = mk("alice", alicePassword, store.StatusActive)
	e.dora = mk("dora", doraPassword, store.StatusDisabled)
	root := mk("root", "", store.StatusActive)
	if _, err := ids.CreateGroup(ctx, "test", &store.Group{DisplayName: AdminGroup,
		Members: []store.Ref{{Kind: store.KindUser, ID: root.ID}}}); err != nil {
		t.Fatalf("creating the admin group: %v", err)
	}
	tok, hash := NewToken(testTokenKey)
	if err := st.CreateAPIToken(ctx, &store.APIToken{Name: "test", Hash: hash, UserID: root.ID, Created: time.Now()}); err != nil {
		t.Fatalf("creating the admin token: %v", err)
	}
	e.adminToken = tok

	mux := http.NewServeMux()
	e.srv = httptest.NewTLSServer(mux)
	t.Cleanup(e.srv.Close)
	if opts.BaseURL == "" {
		opts.BaseURL = e.srv.URL
	}
	if opts.Audit == nil {
		opts.Audit = st
	}
	e.s = NewSessions(ids, sst, NewAdmins(st, testTokenKey), opts)
	// The component's clock stands still unless a test advances it: a slow
	// machine (argon2id under -race) must not let a back-off run out between
	// two requests of a test.
	base := time.Now()
	e.s.now = func() time.Time {
		e.mu.Lock()
		defer e.mu.Unlock()
		return base.Add(e.offset)
	}
	e.s.Register(mux)
	return e
}

// advance moves the clock of the component forward.
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.offset += d
	e.mu.Unlock()
}

// client is a browser-like client: it keeps cookies and does not follow
// redirects (tests look at the 303 itself).
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *e.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (e *env) request(t testing.TB, c *http.Client, method, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, c, req)
}

func (e *env) signinJSON(t testing.TB, c *http.Client, user, pw string, header ...string) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(credentials{UserName: user, Password: pw})
	return e.request(t, c, http.MethodPost, "/api/v1/signin", string(b), append([]string{"Content-Type", "application/json"}, header...)...)
}

var csrfFieldRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formToken loads a page like a browser and returns its hidden CSRF token.
func (e *env) formToken(t testing.TB, c *http.Client, path string) string {
	t.Helper()
	resp, body := e.request(t, c, http.MethodGet, path, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", path, resp.StatusCode)
	}
	m := csrfFieldRE.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field in %s:\n%s", path, body)
	}
	return string(m[1])
}

func (e *env) postForm(t testing.TB, c *http.Client, path string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	resp, body := e.request(t, c, http.MethodPost, path, form.Encode(),
		append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
	return resp, string(body)
}

// sessionCookie returns the session cookie the client holds, or "".
func (e *env) sessionCookie(c *http.Client) string {
	u, _ := url.Parse(e.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == e.s.CookieName() {
			return ck.Value
		}
	}
	return ""
}

func (e *env) listOwn(t testing.TB, c *http.Client) (int, []sessionInfo) {
	t.Helper()
	resp, body := e.request(t, c, http.MethodGet, "/api/v1/sessions", "")
	var l sessionList
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatalf("session list %s: %v", body, err)
		}
	}
	return resp.StatusCode, l.Sessions
}

func decodeProblem(t testing.TB, resp *http.Response, body []byte) problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != resp.StatusCode {
		t.Fatalf("problem body %s (%v) does not match status %d", body, err, resp.StatusCode)
	}
	return p
}
