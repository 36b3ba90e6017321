// Package platformtest runs `thingid serve` in-process for the examples'
// tests, with its broker and gateway on loopback ports, and plays the people
// and the factory around a device: a device certificate from the platform's
// device CA, an owner who signs in and approves or denies a pairing, unlinks
// a device, shares what they own and revokes it, an administrator who
// registers a cloud service or a trusted UMA resource server. It is imported
// only by _test files.
package platformtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/factory"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// Options choose what runs besides the platform's HTTPS listener.
type Options struct {
	// Broker starts the MQTT broker's TLS listener.
	Broker bool
	// CoAP starts the CoAP gateway's DTLS listener.
	CoAP bool
	// Routes, when not empty, is a gateway routes file (YAML): the gateway
	// starts with it.
	Routes string
	// UMARoutes, when not nil, registers a first-party UMA resource server
	// before the platform starts (a confidential client with the client
	// credentials grant and the scope uma_protection, listed in
	// uma.trustedResourceServers: Platform.ResourceServer), and the gateway
	// starts with the routes file UMARoutes returns for that client's id
	// too.
	UMARoutes func(resourceServer string) string
	// Tweak changes the configuration before it is validated.
	Tweak func(*config.Config)
}

// Platform is a running platform.
type Platform struct {
	P *server.Platform
	// URL is the platform's issuer, https://127.0.0.1:port.
	URL string
	// Roots trusts the platform's TLS certificate; CAFile is the same CA as a file.
	Roots  *x509.CertPool
	CAFile string
	// BrokerURL is mqtts://localhost:port with Options.Broker.
	BrokerURL string
	// CoAPURL is coaps://127.0.0.1:port with Options.CoAP.
	CoAPURL string
	// GatewayURL is https://localhost:port with Options.Routes or UMARoutes.
	GatewayURL string
	// ResourceServer is the trusted resource server of Options.UMARoutes.
	ResourceServer Credentials
}

// Credentials are a confidential client's.
type Credentials struct{ ID, Secret string }

// Start runs the platform until the test ends.
func Start(t testing.TB, opts Options) *Platform {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Home = t.TempDir()
	cfg.Passwords.MinLength = 15
	cfg.HTTP.PublicURL = "https://" + ln.Addr().String()
	cfg.MQTT.Enabled = opts.Broker
	cfg.MQTT.TLS.Address = "127.0.0.1:0"
	cfg.CoAP.Enabled = opts.CoAP
	cfg.CoAP.DTLSAddress = "127.0.0.1:0"
	cfg.CoAP.UDPAddress = ""
	gateway := opts.Routes != "" || opts.UMARoutes != nil
	cfg.Gateway.Enabled = gateway
	cfg.Gateway.Address = "127.0.0.1:0"
	if opts.Tweak != nil {
		opts.Tweak(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := server.Open(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	pl := &Platform{P: p, URL: cfg.HTTP.PublicURL, Roots: x509.NewCertPool(), CAFile: filepath.Join(cfg.Home, "pki", "ca.crt")}
	routes := map[string]string{"routes.yaml": opts.Routes}
	if opts.UMARoutes != nil {
		// Trusted before Serve reads the configuration.
		id, secret := pl.client(t, oauth.ClientSpec{Name: "resource-server", GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"uma_protection"}})
		p.Config.UMA.TrustedResourceServers = append(p.Config.UMA.TrustedResourceServers, id)
		pl.ResourceServer = Credentials{ID: id, Secret: secret}
		routes["uma.yaml"] = opts.UMARoutes(id)
	}
	if gateway {
		if err := os.MkdirAll(cfg.Gateway.Routes, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, file := range routes {
			if file == "" {
				continue
			}
			if err := os.WriteFile(filepath.Join(cfg.Gateway.Routes, name), []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := &Output{}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, slog.New(slog.DiscardHandler), out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the platform stopped with %v", err)
		}
		p.Close()
	})
	wait(t, "the platform's CA file", func() bool {
		ca, err := os.ReadFile(pl.CAFile)
		return err == nil && pl.Roots.AppendCertsFromPEM(ca)
	})
	wait(t, "the platform to answer /healthz", func() bool {
		resp, err := pl.Client().Get(pl.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if opts.Broker {
		pl.BrokerURL = "mqtts://localhost:" + printedPort(t, out, `MQTT broker \(tls\) on mqtts://(\S+)`)
	}
	if opts.CoAP {
		pl.CoAPURL = "coaps://127.0.0.1:" + printedPort(t, out, `CoAP gateway is serving on coaps://(\S+)`)
	}
	if gateway {
		pl.GatewayURL = "https://localhost:" + printedPort(t, out, `thingid gateway is serving on https://(\S+) `)
	}
	return pl
}

func wait(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// printedPort is the port of the address Serve printed for a listener.
func printedPort(t testing.TB, out *Output, pattern string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	var addr string
	wait(t, "the address of "+pattern, func() bool {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("printed address %q: %v", addr, err)
	}
	return port
}

// Output collects what a program writes (the operator's output of Serve, an
// example's stdout) while the test reads it.
type Output struct {
	mu sync.Mutex
	b  []byte
}

func (l *Output) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *Output) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// Client is a browser-like client of the platform: it keeps cookies and does
// not follow redirects.
func (pl *Platform) Client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pl.Roots}}, Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Device makes a thing as the factory does, with a key and a certificate of
// the device CA written as device.pem and device.key in a fresh directory;
// lifetime 0 is the configured one.
func (pl *Platform) Device(t testing.TB, model, serial string, lifetime time.Duration) (thingID, certFile, keyFile string) {
	t.Helper()
	ctx := context.Background()
	_, dca, err := pl.P.PKI()
	if err != nil {
		t.Fatal(err)
	}
	th, err := pl.P.Identity.CreateThing(ctx, "test", &store.Thing{Manufacturer: "Acme", Model: model, SerialNumber: serial, DisplayName: model + " " + serial})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dca.IssueDevice(th.ID, serial, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pl.P.Identity.AddCertificate(ctx, "test", th.ID, store.CertRefOf(dc.Leaf)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
	keyPEM, err := dc.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, dc.ChainPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return th.ID, certFile, keyFile
}

// PSK issues the thing a DTLS pre-shared key as `thingid factory psk`
// does and writes its identity and key in files, as `factory issue --psk`
// does.
func (pl *Platform) PSK(t testing.TB, thingID string) (identityFile, keyFile string) {
	t.Helper()
	in, err := factory.IssuePSK(context.Background(), pl.P.Identity, pl.P.Key, "test", thingID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	identityFile, keyFile = filepath.Join(dir, factory.PSKIdentityFile), filepath.Join(dir, factory.PSKKeyFile)
	if err := os.WriteFile(identityFile, []byte(in.Identity+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(in.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return identityFile, keyFile
}

// User creates a person who can sign in, and returns the person's ID.
func (pl *Platform) User(t testing.TB, name, password string) string {
	t.Helper()
	u, err := pl.P.Identity.CreateUser(context.Background(), "test", &store.User{UserName: name}, password)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// Service registers a confidential client for the client credentials grant
// with scopes, as `thingid clients create` does, and returns its id and secret.
func (pl *Platform) Service(t testing.TB, name string, scopes ...string) (id, secret string) {
	t.Helper()
	return pl.client(t, oauth.ClientSpec{Name: name, GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: scopes})
}

// client registers a client as `thingid clients create` does.
func (pl *Platform) client(t testing.TB, spec oauth.ClientSpec) (id, secret string) {
	t.Helper()
	srv, cleanup, err := pl.P.OAuthAdmin(context.Background(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	c, secret, err := srv.CreateClient(context.Background(), "test", spec)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, secret
}

// ServiceToken gets an access token of a service registered with Service
// (the client credentials grant, client_secret_basic).
func (pl *Platform) ServiceToken(t testing.TB, id, secret string, scopes ...string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: pl.URL + "/oauth2/token", Scopes: scopes}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, pl.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// Person is a signed-in user on a laptop.
type Person struct {
	pl *Platform
	c  *http.Client
}

// SignIn signs the user in with a fresh browser.
func (pl *Platform) SignIn(userName, password string) (*Person, error) {
	p := &Person{pl: pl, c: pl.Client()}
	creds, _ := json.Marshal(map[string]string{"userName": userName, "password": password})
	if _, err := p.send(http.MethodPost, "/api/v1/signin", "application/json", string(creds), http.StatusOK); err != nil {
		return nil, err
	}
	return p, nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// Decide enters the user code on /device and answers "allow" or "deny" on
// the consent page.
func (p *Person) Decide(code, decision string) error {
	page, err := p.send(http.MethodGet, "/device", "", "", http.StatusOK)
	if err != nil {
		return err
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		return fmt.Errorf("no CSRF field on /device: %s", page)
	}
	form := url.Values{"csrf": {m[1]}, "user_code": {code}}
	if page, err = p.send(http.MethodPost, "/device", "application/x-www-form-urlencoded", form.Encode(), http.StatusOK); err != nil {
		return err
	}
	if m = csrfRE.FindStringSubmatch(page); m == nil {
		return fmt.Errorf("no consent page after entering %s: %s", code, page)
	}
	form = url.Values{"csrf": {m[1]}, "user_code": {code}, "decision": {decision}}
	_, err = p.send(http.MethodPost, "/device/decision", "application/x-www-form-urlencoded", form.Encode(), http.StatusOK)
	return err
}

// Unlink removes the device from the user's devices ("My devices").
func (p *Person) Unlink(thingID string) error {
	_, err := p.send(http.MethodDelete, "/api/v1/devices/"+url.PathEscape(thingID), "", "", http.StatusNoContent)
	return err
}

// RevokeGrants revokes every grant of the user for thingID ("Apps and
// devices"), leaving the device linked.
func (p *Person) RevokeGrants(thingID string) error {
	body, err := p.send(http.MethodGet, "/api/v1/grants", "", "", http.StatusOK)
	if err != nil {
		return err
	}
	var list struct {
		Grants []struct {
			ID      string `json:"id"`
			ThingID string `json:"thingId"`
		} `json:"grants"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return err
	}
	for _, g := range list.Grants {
		if g.ThingID == thingID {
			if _, err := p.send(http.MethodDelete, "/api/v1/grants/"+url.PathEscape(g.ID), "", "", http.StatusNoContent); err != nil {
				return err
			}
		}
	}
	return nil
}

// Request is a request for one of the person's resources, waiting for
// their decision (GET /api/v1/uma/requests).
type Request struct {
	ID            string   `json:"id"`
	ResourceID    string   `json:"resourceId"`
	RequesterName string   `json:"requesterName"`
	ClientID      string   `json:"clientId"`
	Scopes        []string `json:"scopes"`
}

// Requests lists the requests waiting for the person's decision.
func (p *Person) Requests() ([]Request, error) {
	body, err := p.send(http.MethodGet, "/api/v1/uma/requests", "", "", http.StatusOK)
	if err != nil {
		return nil, err
	}
	var list struct {
		Requests []Request `json:"requests"`
	}
	return list.Requests, json.Unmarshal([]byte(body), &list)
}

// Approve approves a request with the scopes it asks for and returns the
// share it made.
func (p *Person) Approve(requestID string) (shareID string, err error) {
	body, err := p.send(http.MethodPost, "/api/v1/uma/requests/"+url.PathEscape(requestID)+"/approve", "", "", http.StatusOK)
	if err != nil {
		return "", err
	}
	var share struct {
		ID string `json:"id"`
	}
	return share.ID, json.Unmarshal([]byte(body), &share)
}

// Deny denies a request: the requesting party's next try is request_denied.
func (p *Person) Deny(requestID string) error {
	_, err := p.send(http.MethodPost, "/api/v1/uma/requests/"+url.PathEscape(requestID)+"/deny", "", "", http.StatusNoContent)
	return err
}

// RevokeShare takes a share back; the RPTs it produced stop at once.
func (p *Person) RevokeShare(shareID string) error {
	_, err := p.send(http.MethodDelete, "/api/v1/uma/shares/"+url.PathEscape(shareID), "", "", http.StatusNoContent)
	return err
}

func (p *Person) send(method, path, ctype, body string, want int) (string, error) {
	req, err := http.NewRequest(method, p.pl.URL+path, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Origin", p.pl.URL)
	resp, err := p.c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return "", fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return string(b), nil
}

// Tool is the path of a command-line tool a test needs. Without it the test
// is skipped, except in CI (CI=true), where that is a failure.
func Tool(t testing.TB, name, debianPackage string) string {
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
