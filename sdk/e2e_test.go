package sdk_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/sdk"
)

// platform is `thingid serve` running in-process on a loopback port, as
// internal/server's tests start it; the SDK talks to it like a device.
type platform struct {
	p     *server.Platform
	url   string
	roots *x509.CertPool
}

// before, when given, runs between opening the platform and serving it
// (to create clients, say).
func startPlatform(t *testing.T, tweak func(*config.Config), before ...func(*server.Platform)) *platform {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Home = t.TempDir()
	cfg.Passwords.MinLength = 15
	cfg.HTTP.PublicURL = "https://" + ln.Addr().String()
	cfg.MQTT.TLS.Address = "127.0.0.1:0" // tests run in parallel
	cfg.Gateway.Address = "127.0.0.1:0"
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := server.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		f(p)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard) }()
	t.Cleanup(func() {
		cancel()
		<-done
		p.Close()
	})
	pl := &platform{p: p, url: cfg.HTTP.PublicURL, roots: x509.NewCertPool()}
	for i := 0; ; i++ {
		ca, err := os.ReadFile(filepath.Join(cfg.Home, "pki", "ca.crt"))
		if err == nil && pl.roots.AppendCertsFromPEM(ca) {
			break
		}
		if i == 200 {
			t.Fatal("no platform CA written")
		}
		time.Sleep(25 * time.Millisecond)
	}
	c := pl.client()
	for i := 0; ; i++ {
		if resp, err := c.Get(pl.url + "/healthz"); err == nil {
			resp.Body.Close()
			return pl
		}
		if i == 200 {
			t.Fatal("the platform does not answer /healthz")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// client is a browser-like client of the platform: it keeps cookies and
// does not follow redirects.
func (pl *platform) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: tlsRoots(pl.roots)}
	return &http.Client{Transport: tr, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// device makes a thing as the factory does: a thing with a serial, a key and
// a certificate of the device CA recorded on it, written as device.key and
// device.pem. lifetime 0 is the configured one.
func (pl *platform) device(t *testing.T, serial string, lifetime time.Duration) (*store.Thing, string, string) {
	t.Helper()
	ctx := context.Background()
	_, dca, err := pl.p.PKI()
	if err != nil {
		t.Fatal(err)
	}
	th, err := pl.p.Identity.CreateThing(ctx, "test", &store.Thing{Manufacturer: "Acme", Model: "Speaker", SerialNumber: serial})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dca.IssueDevice(th.ID, serial, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pl.p.Identity.AddCertificate(ctx, "test", th.ID, store.CertRefOf(dc.Leaf)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
	keyPEM, _ := dc.KeyPEM()
	os.WriteFile(certFile, dc.ChainPEM(), 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	return th, certFile, keyFile
}

// user creates a person who can sign in.
func (pl *platform) user(t *testing.T, name, pw string) *store.User {
	t.Helper()
	u, err := pl.p.Identity.CreateUser(context.Background(), "test", &store.User{UserName: name}, pw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// approve is the owner on a laptop: sign in, enter the user code, allow (or deny).
func (pl *platform) approve(t *testing.T, user, pw, code, decision string) {
	t.Helper()
	c := pl.client()
	send := func(method, path, ctype, body string) string {
		req, _ := http.NewRequest(method, pl.url+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Origin", pl.url)
		resp, err := c.Do(req)
		if err != nil {
			t.Error(err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	creds, _ := json.Marshal(map[string]string{"userName": user, "password": pw})
	send(http.MethodPost, "/api/v1/signin", "application/json", string(creds))
	page := send(http.MethodGet, "/device", "", "")
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Errorf("no CSRF field on /device: %s", page)
		return
	}
	form := url.Values{"csrf": {m[1]}, "user_code": {code}}
	page = send(http.MethodPost, "/device", "application/x-www-form-urlencoded", form.Encode())
	if m = csrfRE.FindStringSubmatch(page); m == nil {
		t.Errorf("no consent page: %s", page)
		return
	}
	form = url.Values{"csrf": {m[1]}, "user_code": {code}, "decision": {decision}}
	send(http.MethodPost, "/device/decision", "application/x-www-form-urlencoded", form.Encode())
}

// pair runs the device flow of c, the owner deciding on the laptop while
// the device polls.
func (pl *platform) pair(t *testing.T, c *sdk.Client, user, pw, decision string) (*sdk.TokenSource, sdk.UserCode, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var shown sdk.UserCode
	ts, err := c.Pair(ctx, func(_ context.Context, code sdk.UserCode) error {
		shown = code
		go pl.approve(t, user, pw, code.UserCode, decision)
		return nil
	})
	return ts, shown, err
}

// claims verifies an access token with the platform's published keys.
func (pl *platform) claims(t *testing.T, c *sdk.Client, raw string) jwt.Token {
	t.Helper()
	m, err := c.Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pl.client().Get(m.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	set, err := jwk.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(pl.url))
	if err != nil {
		t.Fatalf("access token: %v", err)
	}
	return tok
}

func cnf(t *testing.T, tok jwt.Token) map[string]any {
	t.Helper()
	var v map[string]any
	if err := tok.Get("cnf", &v); err != nil {
		t.Fatalf("no cnf claim: %v", err)
	}
	return v
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The factory certificate is renewed over EST when due, the files replaced,
// the thing the same; New loads the renewed pair.
func TestRenewal(t *testing.T) {
	pl := startPlatform(t, nil)
	th, certFile, keyFile := pl.device(t, "SN-RENEW-1", 3*time.Hour)
	oldKey, _ := os.ReadFile(keyFile)
	// A short-lived certificate is due at once with RenewAfter 0.02 (five
	// minutes of clock skew are already behind it); its successor, issued
	// for years, is not.
	c, err := sdk.New(sdk.Config{Server: pl.url, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.roots, RenewAfter: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	old := c.Certificate()
	renewed, err := c.RenewIfDue(context.Background())
	if err != nil || !renewed {
		t.Fatalf("renewal: %v %v", renewed, err)
	}
	cur := c.Certificate()
	if cur.Equal(old) || c.ThingID() != th.ID || sdk.ThingID(cur) != th.ID || cur.Subject.String() != old.Subject.String() {
		t.Fatalf("renewed certificate: %s %s", cur.Subject, sdk.ThingID(cur))
	}
	if again, err := c.RenewIfDue(context.Background()); err != nil || again {
		t.Errorf("the new certificate should not be due: %v %v", again, err)
	}
	newKey, _ := os.ReadFile(keyFile)
	if bytes.Equal(oldKey, newKey) {
		t.Error("the key was not replaced: renewal must re-key")
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	c2, err := sdk.New(sdk.Config{Server: pl.url, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.roots})
	if err != nil || !c2.Certificate().Equal(cur) {
		t.Fatalf("reloading the renewed files: %v", err)
	}
	stored, _ := pl.p.Identity.GetThing(context.Background(), th.ID)
	if len(stored.Certificates) != 2 {
		t.Errorf("the thing should record both certificates: %+v", stored.Certificates)
	}
	// The renewed certificate renews in turn (forced).
	if err := c2.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A device without a certificate enrolls with a one-time token.
func TestEnrollWithToken(t *testing.T) {
	pl := startPlatform(t, nil)
	th, err := pl.p.Identity.CreateThing(context.Background(), "test", &store.Thing{Model: "Speaker", SerialNumber: "SN-ENROLL-1"})
	if err != nil {
		t.Fatal(err)
	}
	estSrv, err := pl.p.EnrollmentTokens(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := estSrv.CreateToken(context.Background(), "test", th.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := sdk.EnrollConfig{Server: pl.url, RootCAs: pl.roots, ThingID: th.ID, Token: tok.Secret,
		CertFile: filepath.Join(dir, "device.pem"), KeyFile: filepath.Join(dir, "device.key")}
	if err := sdk.Enroll(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	c, err := sdk.New(sdk.Config{Server: pl.url, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, RootCAs: pl.roots})
	if err != nil || c.ThingID() != th.ID {
		t.Fatalf("enrolled device: %v", err)
	}
	// The token is spent: the error says why, from the platform's own words.
	err = sdk.Enroll(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("second enrollment: %v", err)
	}
}

// Pairing through the device flow with a DPoP key and no certificate (a
// public client), then DPoP requests at the UserInfo endpoint, with and
// without server nonces.
func TestPairWithDPoP(t *testing.T) {
	for _, nonces := range []bool{false, true} {
		t.Run(map[bool]string{false: "without nonces", true: "with nonces"}[nonces], func(t *testing.T) {
			pl := startPlatform(t, func(c *config.Config) { c.OAuth.DPoPNonces = nonces })
			alice := pl.user(t, "alice", "correct horse battery staple")
			speaker, _ := pl.p.Identity.CreateThing(context.Background(), "test", &store.Thing{Model: "Speaker", SerialNumber: "SN-DPOP-1"})
			c, err := sdk.New(sdk.Config{Server: pl.url, RootCAs: pl.roots, ClientID: pl.publicClient(t, speaker.ID), DPoPKey: newKey(t),
				Scopes: []string{"openid", "profile", "offline_access"}})
			if err != nil {
				t.Fatal(err)
			}
			ts, shown, err := pl.pair(t, c, "alice", "correct horse battery staple", "allow")
			if err != nil {
				t.Fatal(err)
			}
			if shown.UserCode == "" || shown.VerificationURI != pl.url+"/device" || shown.ExpiresAt.Before(time.Now()) {
				t.Errorf("user code shown: %+v", shown)
			}
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok.Type() != "DPoP" || tok.RefreshToken == "" {
				t.Fatalf("token type %q, refresh token %v", tok.Type(), tok.RefreshToken != "")
			}
			claims := pl.claims(t, c, tok.AccessToken)
			jkt := c.PlatformClient().Transport.(*sdk.DPoP).Thumbprint()
			if sub, _ := claims.Subject(); sub != alice.ID || cnf(t, claims)["jkt"] != jkt {
				t.Fatalf("token claims: sub %v cnf %v", sub, cnf(t, claims))
			}
			userinfo := func(hc *http.Client) (int, string) {
				resp, err := hc.Get(pl.url + "/oauth2/userinfo")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := userinfo(c.HTTPClient(ts)); code != 200 || !strings.Contains(body, alice.ID) {
				t.Fatalf("userinfo with DPoP: %d %s", code, body)
			}
			// The same token as a plain Bearer token is refused (RFC 9449 §7.1).
			plain := pl.client()
			plain.Transport = &bearerOnly{tok.AccessToken, plain.Transport}
			if code, body := userinfo(plain); code != 401 {
				t.Fatalf("DPoP-bound token as Bearer: %d %s", code, body)
			}
			// After a restart: the saved token is refreshed, still DPoP-bound.
			var saved *oauth2.Token
			resumed := c.Resume(&oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)})
			resumed.OnRefresh(func(t *oauth2.Token) { saved = t })
			if code, body := userinfo(c.HTTPClient(resumed)); code != 200 || !strings.Contains(body, alice.ID) {
				t.Fatalf("userinfo after refresh: %d %s", code, body)
			}
			if saved == nil || saved.RefreshToken == tok.RefreshToken || saved.Type() != "DPoP" {
				t.Fatalf("refreshed token %+v", saved)
			}
		})
	}
}

type bearerOnly struct {
	tok  string
	base http.RoundTripper
}

func (b *bearerOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.base.RoundTrip(r)
}

// publicClient registers the app of a speaker: a public client that pairs.
func (pl *platform) publicClient(t *testing.T, thingID string) string {
	t.Helper()
	srv, cleanup, err := pl.p.OAuthAdmin(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	client, _, err := srv.CreateClient(context.Background(), "test", oauth.ClientSpec{Name: "Speaker app", Type: store.ClientPublic,
		ThingID: thingID, GrantTypes: []string{oauth.GrantDeviceCode, oauth.GrantRefreshToken}, Scopes: []string{"openid", "profile", "offline_access"}})
	if err != nil {
		t.Fatal(err)
	}
	return client.ID
}

func TestPairingDenied(t *testing.T) {
	pl := startPlatform(t, nil)
	pl.user(t, "bob", "correct horse battery staple")
	speaker, _ := pl.p.Identity.CreateThing(context.Background(), "test", &store.Thing{Model: "Speaker", SerialNumber: "SN-DENY-1"})
	c, err := sdk.New(sdk.Config{Server: pl.url, RootCAs: pl.roots, ClientID: pl.publicClient(t, speaker.ID), DPoPKey: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pl.pair(t, c, "bob", "correct horse battery staple", "deny"); !errors.Is(err, sdk.ErrPairingDenied) {
		t.Fatalf("denied pairing: %v", err)
	}
}

// A thing pairs as itself, over mutual TLS with its certificate (the client
// every thing is); the tokens act for the owner and are bound to the
// certificate.
func TestPairOverMutualTLS(t *testing.T) {
	pl := startPlatform(t, nil)
	carol := pl.user(t, "carol", "correct horse battery staple")
	th, certFile, keyFile := pl.device(t, "SN-PAIR-1", 0)
	c, err := sdk.New(sdk.Config{Server: pl.url, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.roots})
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := pl.pair(t, c, "carol", "correct horse battery staple", "allow")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := ts.Token()
	claims := pl.claims(t, c, tok.AccessToken)
	if sub, _ := claims.Subject(); sub != carol.ID || cnf(t, claims)["x5t#S256"] != thumbprint(c.Certificate()) {
		t.Fatalf("paired token: sub %v (want %s, thing %s) cnf %v", sub, carol.ID, th.ID, cnf(t, claims))
	}
}

// Calling home: client credentials over mutual TLS (tls_client_auth) give a
// token bound to the certificate; after a renewal the SDK gets a token bound
// to the new one.
func TestCallHome(t *testing.T) {
	pl := startPlatform(t, nil)
	th, certFile, keyFile := pl.device(t, "SN-CALL-1", 0)
	c, err := sdk.New(sdk.Config{Server: pl.url, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.roots})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.CallHome(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := ts.Token()
	claims := pl.claims(t, c, tok.AccessToken)
	if sub, _ := claims.Subject(); sub != th.ID || cnf(t, claims)["x5t#S256"] != thumbprint(c.Certificate()) || tok.Type() != "Bearer" {
		t.Fatalf("call-home token: sub %v cnf %v type %s", sub, cnf(t, claims), tok.Type())
	}
	if err := c.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok2, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok.AccessToken || cnf(t, pl.claims(t, c, tok2.AccessToken))["x5t#S256"] != thumbprint(c.Certificate()) {
		t.Fatal("after the renewal the token should be bound to the new certificate")
	}
}

// Mistakes a device maker makes get errors that say what to do.
func TestSetupMistakes(t *testing.T) {
	pl := startPlatform(t, nil)
	_, certFile, keyFile := pl.device(t, "SN-ERR-1", 0)
	ctx := context.Background()
	untrusted, _ := sdk.New(sdk.Config{Server: pl.url, CertFile: certFile, KeyFile: keyFile})
	if _, err := untrusted.CallHome(ctx); err == nil || !strings.Contains(err.Error(), "Config.RootCAs") {
		t.Errorf("untrusted platform: %v", err)
	}
	u, _ := url.Parse(pl.url)
	other, _ := sdk.New(sdk.Config{Server: "https://localhost:" + u.Port(), CertFile: certFile, KeyFile: keyFile, RootCAs: pl.roots})
	if _, err := other.Discover(ctx); err == nil || !strings.Contains(err.Error(), "set Config.Server to") {
		t.Errorf("another name of the server: %v", err)
	}
	for _, cfg := range []sdk.Config{
		{Server: "http://" + u.Host, CertFile: certFile, KeyFile: keyFile},
		{Server: pl.url, CertFile: certFile},
		{Server: pl.url},
		{Server: pl.url, CertFile: keyFile, KeyFile: certFile},
	} {
		if _, err := sdk.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func thumbprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func tlsRoots(roots *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: roots} }
