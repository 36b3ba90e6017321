package oauth

import (
	"context"
	"crypto/tls"
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

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	alicePassword = "purple monkey dishwasher"
	bobPassword   = "correct stapler battery horse"
)

var (
	testKey      = []byte("0123456789abcdef0123456789abcdef")
	testTokenKey = []byte("fedcba9876543210fedcba9876543210")
	quiet        = slog.New(slog.DiscardHandler)
)

// env is the real Server on a real SQLite store behind an httptest TLS
// server, with the real identity service, authn sign-in and tokens: alice and
// bob (users), root (an administrator with an API token) and a speaker thing.
type env struct {
	srv        *httptest.Server
	s          *Server
	st         store.Store
	dbPath     string
	ids        *identity.Service
	bus        *events.Bus
	keys       *tokens.Keys
	verifier   *tokens.Verifier
	alice, bob *store.User
	speaker    *store.Thing
	adminToken string
	// resourceServers are the server's oauth.resourceServers, which
	// resourceServer fills.
	resourceServers ResourceServers

	mu     sync.Mutex
	events []events.Event
}

func newEnv(t testing.TB, tweak ...func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "thingid.db")
	st, err := sqlite.Open(dbPath)
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, dbPath: dbPath, bus: events.New(), resourceServers: ResourceServers{}}
	e.bus.Subscribe(func(ev events.Event) {
		e.mu.Lock()
		e.events = append(e.events, ev)
		e.mu.Unlock()
	})
	e.ids = identity.New(st, e.bus, password.Policy{})
	mk := func(name, pw string) *store.User {
		u, err := e.ids.CreateUser(ctx, "test", &store.User{UserName: name, Status: store.StatusActive,
			Emails: []store.MultiValue{{Value: name + "@example.org"}}}, pw)
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		return u
	}
	e.alice = mk("alice", alicePassword)
	e.bob = mk("bob", bobPassword)
	root := mk("root", "")
	if _, err := e.ids.CreateGroup(ctx, "test", &store.Group{DisplayName: authn.AdminGroup,
		Members: []store.Ref{{Kind: store.KindUser, ID: root.ID}}}); err != nil {
		t.Fatalf("creating the admin group: %v", err)
	}
	tok, hash := authn.NewToken(testTokenKey)
	if err := st.CreateAPIToken(ctx, &store.APIToken{Name: "test", Hash: hash, UserID: root.ID, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e.adminToken = tok
	e.speaker, err = e.ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "Living room speaker", Type: store.ThingDevice,
		Manufacturer: "Acme", Model: "Speaker-1", SerialNumber: "SN-0001", Status: store.StatusActive})
	if err != nil {
		t.Fatalf("creating the speaker: %v", err)
	}

	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	// Like the platform's listener: a client certificate is optional at the
	// handshake and checked by the endpoints (RFC 8705).
	e.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	issuer := e.srv.URL

	var mkey secrets.Key
	copy(mkey[:], testKey)
	e.keys, err = tokens.NewKeys(ctx, st, tokens.KeysConfig{MasterKey: mkey, Bus: e.bus, Log: quiet})
	if err != nil {
		t.Fatalf("keys: %v", err)
	}
	t.Cleanup(e.keys.Close)
	iss, err := tokens.NewIssuer(e.keys, issuer)
	if err != nil {
		t.Fatal(err)
	}
	e.verifier, err = tokens.NewVerifier(e.keys, tokens.VerifierConfig{Issuer: issuer, Bus: e.bus, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.verifier.Close)

	admins := authn.NewAdmins(st, testTokenKey)
	sessions := authn.NewSessions(e.ids, st.(authn.SessionStore), admins, authn.SessionOptions{
		Key: testKey, BaseURL: issuer, Audit: st, Logger: quiet, IPAttemptsPerMinute: 6000, IPBurst: 1000})
	sessions.Register(mux)

	opts := Options{
		Issuer: issuer, Store: st, Identities: e.ids, Tokens: iss, Keys: e.keys, Verifier: e.verifier,
		Bus: e.bus, Sessions: sessions, Key: testKey, Logger: quiet, Actor: authn.Actor,
		Admin: func(h http.Handler) http.Handler {
			return admins.Require(h, func(w http.ResponseWriter, _ *http.Request, _ error) {
				problem.Write(w, http.StatusUnauthorized, "", "administrator credentials required")
			})
		},
		Scopes:          []string{"openid", "offline_access", "speaker:play", "speaker:admin", "telemetry:write"},
		DeviceInterval:  time.Second,
		ResourceServers: e.resourceServers,
	}
	for _, f := range tweak {
		f(&opts)
	}
	e.s, err = New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.s.Register(mux)
	return e
}

// eventsOf returns the published events of one type.
func (e *env) eventsOf(typ string) []events.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []events.Event
	for _, ev := range e.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// client registers a client through the Go API and returns it with its secret.
func (e *env) client(t testing.TB, spec ClientSpec) (*store.Client, string) {
	t.Helper()
	c, secret, err := e.s.CreateClient(context.Background(), "test", spec)
	if err != nil {
		t.Fatalf("creating client %q: %v", spec.Name, err)
	}
	return c, secret
}

// browser is a cookie-keeping client that does not follow redirects.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *e.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// signIn signs a browser in through authn's JSON API.
func (e *env) signIn(t testing.TB, c *http.Client, user, pw string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"userName": user, "password": pw})
	resp, body := e.do(t, c, http.MethodPost, "/api/v1/signin", "application/json", string(b))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signing %s in: %d %s", user, resp.StatusCode, body)
	}
}

func (e *env) do(t testing.TB, c *http.Client, method, path, ctype, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) post(t testing.TB, c *http.Client, path string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	return e.do(t, c, http.MethodPost, path, "application/x-www-form-urlencoded", form.Encode(), header...)
}

// oauthError decodes an RFC 6749 §5.2 error body.
func oauthError(t testing.TB, body string) string {
	t.Helper()
	var v struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("not an OAuth error: %s", body)
	}
	return v.Error
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of a page.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%s", page)
	}
	return m[1]
}

// enterCode drives /device like a browser: load the form, submit the code.
// It returns the response to the submission (the consent page on success).
func (e *env) enterCode(t testing.TB, c *http.Client, code string) (*http.Response, string) {
	t.Helper()
	resp, page := e.do(t, c, http.MethodGet, "/device", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /device: %d %s", resp.StatusCode, page)
	}
	return e.post(t, c, "/device", url.Values{"csrf": {csrfOf(t, page)}, "user_code": {code}})
}

// decide enters the code and clicks Allow or Deny on the consent page.
func (e *env) decide(t testing.TB, c *http.Client, code, decision string) (*http.Response, string) {
	t.Helper()
	resp, page := e.enterCode(t, c, code)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("entering %s: %d %s", code, resp.StatusCode, page)
	}
	return e.post(t, c, "/device/decision", url.Values{"csrf": {csrfOf(t, page)}, "user_code": {code}, "decision": {decision}})
}
