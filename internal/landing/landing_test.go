package landing

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
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

// env is the landing page beside the real sign-in on a real store, over
// HTTPS.
type env struct {
	t   *testing.T
	srv *httptest.Server
	ids *identity.Service
}

func newEnv(t *testing.T, registration bool) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids := identity.New(st, nil, password.Policy{})
	sessions := authn.NewSessions(ids, st.(authn.SessionStore), nil, authn.SessionOptions{
		Key: []byte("0123456789abcdef0123456789abcdef"), Logger: slog.New(slog.DiscardHandler)})
	mux := routes.New()
	sessions.Register(mux)
	New(Options{Sessions: sessions, Registration: registration, DocsURL: "https://docs.example.com/thingid", Logger: slog.New(slog.DiscardHandler)}).Register(mux)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, ids: ids}
}

func (e *env) browser() *http.Client {
	c := e.srv.Client()
	c.Jar, _ = cookiejar.New(nil)
	return c
}

func (e *env) get(c *http.Client, path string) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn creates a user and signs in as it in c.
func (e *env) signIn(c *http.Client, u *store.User, pw string) {
	e.t.Helper()
	if _, err := e.ids.CreateUser(context.Background(), "test", u, pw); err != nil {
		e.t.Fatal(err)
	}
	creds, _ := json.Marshal(map[string]string{"userName": u.UserName, "password": pw})
	resp, err := c.Post(e.srv.URL+"/api/v1/signin", "application/json", bytes.NewReader(creds))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		e.t.Fatalf("sign-in: %d", resp.StatusCode)
	}
}

const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func TestLandingPage(t *testing.T) {
	e := newEnv(t, true)
	visitor := e.browser()
	resp, body := e.get(visitor, "/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || resp.Header.Get("Content-Security-Policy") != csp ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /: %d %v", resp.StatusCode, resp.Header)
	}
	for _, want := range []string{`href="/signin"`, `href="/register"`, `href="/.well-known/openid-configuration"`, `href="/.well-known/uma2-configuration"`,
		`href="/oauth2/jwks"`, `href="https://docs.example.com/thingid"`, `href="/assets/landing/style.css"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// The strict CSP holds: no script, no inline style, nothing from elsewhere.
	for _, never := range []string{"<script", "style=", "<style", "http://", "src="} {
		if strings.Contains(body, never) {
			t.Errorf("the page has %q, which its CSP forbids or which loads from elsewhere", never)
		}
	}
	if resp, css := e.get(visitor, "/assets/landing/style.css"); resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/css") || len(css) == 0 {
		t.Errorf("stylesheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, body := e.get(visitor, "/?utm_source=x"); resp.StatusCode != 200 || !strings.Contains(body, `href="/signin"`) {
		t.Errorf("/ with a query: %d", resp.StatusCode)
	}
	// Only "/" itself: every other unknown path stays a 404.
	for _, p := range []string{"/index.html", "/nope", "/signin/x", "/%2e", "/.well-known/"} {
		if resp, _ := e.get(visitor, p); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, err := visitor.Post(e.srv.URL+"/", "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST /: %v %v", resp, err)
	}

	// Signed in, the page leads to the account; a user name is text, never markup.
	user := e.browser()
	e.signIn(user, &store.User{UserName: `<script>alert("x")</script>`}, "a long enough passphrase")
	_, body = e.get(user, "/")
	if !strings.Contains(body, "Signed in as <strong>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</strong>") || strings.Contains(body, "<script>") ||
		!strings.Contains(body, `href="/account"`) || strings.Contains(body, `href="/signin"`) {
		t.Fatalf("signed in: %s", body)
	}
	// Signed in with a one-time password: the page says to change it.
	once := e.browser()
	e.signIn(once, &store.User{UserName: "newbie", MustChangePassword: true}, "a one-time passphrase")
	if _, body = e.get(once, "/"); !strings.Contains(body, `href="/account/password"`) || strings.Contains(body, "Signed in as") {
		t.Fatalf("one-time password: %s", body)
	}
}

func TestLandingPageWithoutRegistration(t *testing.T) {
	e := newEnv(t, false)
	if _, body := e.get(e.browser(), "/"); strings.Contains(body, "/register") || !strings.Contains(body, `href="/signin"`) {
		t.Fatalf("registration closed: %s", body)
	}
}
