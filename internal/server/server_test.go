package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

type running struct {
	p      *Platform
	base   string
	client *http.Client
	out    *lockedBuffer // Serve writes it while tests read it
	stop   func() error

	adminPW string // set by adminPassword
}

// serve runs the platform on the default configuration, changed by tweak.
func serve(t *testing.T, tweak ...func(*config.Config)) *running {
	t.Helper()
	return serveWith(t, nil, tweak...)
}

// serveWith is serve with before (when not nil) run on the opened platform
// before it serves.
func serveWith(t *testing.T, before func(*Platform), tweak ...func(*config.Config)) *running {
	t.Helper()
	cfg := config.Default()
	cfg.Home = t.TempDir()
	cfg.Passwords.MinLength = 15
	cfg.MQTT.TLS.Address = "127.0.0.1:0" // tests run in parallel
	cfg.Gateway.Address = "127.0.0.1:0"
	for _, f := range tweak {
		f(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if before != nil {
		before(p)
	}
	go func() { done <- p.Serve(ctx, ln, log, out) }()
	r := &running{p: p, base: "https://" + ln.Addr().String(), out: out}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			p.Close()
		})
		return stopErr
	}
	t.Cleanup(func() { r.stop() })
	// The CA file appears before the server answers.
	var ca []byte
	for i := 0; i < 200; i++ {
		if ca, err = os.ReadFile(filepath.Join(cfg.Home, "pki", "ca.crt")); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no platform CA written")
	}
	r.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	for i := 0; i < 200; i++ {
		if resp, err := r.client.Get(r.base + "/healthz"); err == nil {
			resp.Body.Close()
			return r
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("server did not answer /healthz")
	return nil
}

func (r *running) get(t *testing.T, path string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", r.base+path, nil)
	if auth != nil {
		auth(req)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *running) getWith(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get(r.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func basic(user, pw string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pw) }
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func TestHealthReadyMetrics(t *testing.T) {
	r := serve(t)
	if code, body := r.get(t, "/healthz", nil); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := r.get(t, "/readyz", nil); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, body := r.get(t, "/metrics", nil); code != 200 || !strings.Contains(body, `thingid_http_requests_total{code="200",method="GET",route="GET /healthz"}`) {
		t.Errorf("/metrics: %d, no per-route request counter:\n%.2000s", code, body)
	}
	if err := r.stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
}

// A client chooses the method of its requests: unknown methods are counted
// together, so that nobody can grow /metrics (and the process's memory)
// with a new series per request.
func TestAttackMetricsCardinality(t *testing.T) {
	r := serve(t)
	for i := range 50 {
		req, _ := http.NewRequest(fmt.Sprintf("XMETHOD%03d", i), r.base+"/healthz", nil)
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	_, body := r.get(t, "/metrics", nil)
	if strings.Contains(body, "XMETHOD") {
		t.Errorf("/metrics has a series per client-chosen method:\n%.1000s", body)
	}
	if !strings.Contains(body, `method="OTHER"`) {
		t.Errorf("/metrics does not count unknown methods as OTHER")
	}
}

func TestAdminAuthenticationCannotBeBypassed(t *testing.T) {
	r := serve(t)
	ctx := context.Background()
	oneTime := oneTimePassword(t, r)
	if !strings.Contains(r.out.String(), oneTime) {
		t.Error("the one-time password was not shown to the operator")
	}
	// A second start must not create another administrator or print a password.
	var again bytes.Buffer
	if err := r.p.bootstrapAdmin(ctx, &again); err != nil || again.Len() != 0 {
		t.Errorf("second bootstrap: %v %q", err, again.String())
	}

	// An ordinary user with a correct password is not an administrator.
	if _, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "mallory"}, "a long enough passphrase"); err != nil {
		t.Fatal(err)
	}
	admin, err := r.p.Identity.GetUserByName(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	token, hash := authn.NewToken(r.p.TokenKey())
	if err := r.p.Store.CreateAPIToken(ctx, &store.APIToken{Name: "t", Hash: hash, UserID: admin.ID}); err != nil {
		t.Fatal(err)
	}
	expired, ehash := authn.NewToken(r.p.TokenKey())
	if err := r.p.Store.CreateAPIToken(ctx, &store.APIToken{Name: "old", Hash: ehash, UserID: admin.ID, ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	const path = "/scim/v2/ServiceProviderConfig"
	// The one-time password, and the administrator's tokens, open nothing
	// until the administrator chose a password.
	for what, auth := range map[string]func(*http.Request){"one-time password": basic("admin", oneTime), "token": bearer(token)} {
		code, body := r.get(t, path, auth)
		if code != 401 || !strings.Contains(body, "/signin") || !strings.Contains(body, "urn:ietf:params:scim:api:messages:2.0:Error") {
			t.Errorf("%s before the change: %d %s, want a 401 SCIM error telling to sign in at /signin", what, code, body)
		}
	}
	adminPW := adminPassword(t, r)
	for _, tc := range []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"none", nil, 401},
		{"admin password", basic("admin", adminPW), 200},
		{"one-time password after the change", basic("admin", oneTime), 401},
		{"admin name in other case", basic("ADMIN", adminPW), 200},
		{"wrong password", basic("admin", adminPW+"x"), 401},
		{"unknown user", basic("nobody", adminPW), 401},
		{"non-admin user", basic("mallory", "a long enough passphrase"), 401},
		{"api token", bearer(token), 200},
		{"expired token", bearer(expired), 401},
		{"forged token", bearer(authn.TokenPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 401},
		{"token without prefix", bearer(strings.TrimPrefix(token, authn.TokenPrefix)), 401},
		{"password as bearer", bearer(adminPW), 401},
	} {
		code, body := r.get(t, path, tc.auth)
		if code != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, code, tc.want, body)
		}
		if code == 401 && !strings.Contains(body, "urn:ietf:params:scim:api:messages:2.0:Error") {
			t.Errorf("%s: 401 is not a SCIM error: %s", tc.name, body)
		}
	}
	// Disabling the administrator ends token access at once.
	if _, err := r.p.Identity.UpdateUser(ctx, "test", admin.ID, 0, func(u *store.User) error {
		u.Status = store.StatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code, _ := r.get(t, path, bearer(token)); code != 401 {
		t.Errorf("disabled administrator's token: %d, want 401", code)
	}
}

func TestRegistrationIsServed(t *testing.T) {
	r := serve(t)
	code, body := r.get(t, "/register", nil)
	if code != 200 || !strings.Contains(body, "<form") {
		t.Errorf("/register: %d %.300s", code, body)
	}
}

// The landing page is "/" exactly, under the strict CSP of every page, with
// the configured documentation link; other unknown paths stay 404.
func TestLandingIsServed(t *testing.T) {
	r := serve(t, func(c *config.Config) { c.HTTP.DocsURL = "https://docs.example.com/" })
	resp, body := r.do(t, nil, "GET", "/", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `href="/signin"`) || !strings.Contains(body, `href="https://docs.example.com/"`) ||
		resp.Header.Get("Content-Security-Policy") != "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" {
		t.Fatalf("GET /: %d %v %.300s", resp.StatusCode, resp.Header, body)
	}
	if code, _ := r.get(t, "/no-such-page", nil); code != 404 {
		t.Errorf("an unknown path: %d, want 404", code)
	}
}

// Browser sign-in is served: the first administrator signs in with the JSON API
// and sees the session it got.
func TestSignInIsServed(t *testing.T) {
	r := serve(t)
	pw := oneTimePassword(t, r)
	jar, _ := cookiejar.New(nil)
	c := *r.client
	c.Jar = jar
	body := `{"userName":"admin","password":"` + pw + `"}`
	req, _ := http.NewRequest("POST", r.base+"/api/v1/signin", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", r.base)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	// The one-time password allows nothing but choosing a new one.
	if code, body := r.getWith(t, &c, "/api/v1/sessions"); code != 403 || !strings.Contains(body, "password change required") {
		t.Errorf("sessions before the change: %d %s, want 403", code, body)
	}
	if code, body := r.postWith(t, &c, "/api/v1/password", `{"currentPassword":"`+pw+`","newPassword":"`+pw+` but mine"}`); code != 204 {
		t.Fatalf("password change: %d %s", code, body)
	}
	resp, err = c.Get(r.base + "/api/v1/sessions")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"current":true`) {
		t.Errorf("sessions: %d %s", resp.StatusCode, b)
	}
}
