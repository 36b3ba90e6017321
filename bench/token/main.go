// Command token measures the token endpoint of the real oauth.Server (real
// SQLite store, identity, tokens, authn sessions) in-process on 127.0.0.1,
// over plain HTTP and TLS, with -c concurrent keep-alive clients for -d each:
// client_credentials, refresh-token rotation, device-code polling, DPoP-bound
// client_credentials, and devices calling home over mutual TLS (a full TLS
// handshake with the device certificate per token). With
// -peer-binary it runs zitadel/oidc's example server as a subprocess and
// measures its client_credentials rate with the same load generator: the Go
// one in this process, or wrk (-wrk) as the issue measured the peer, which
// leaves the CPU of this process to the server. -rounds interleaves both.
//
// Output is one "name value unit" line per figure.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/bench/internal/wrk"
	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/sdk"
)

const userPassword = "bench password for alice"

var (
	conc       = flag.Int("c", 16, "concurrent keep-alive clients")
	dur        = flag.Duration("d", 5*time.Second, "duration of each measurement")
	codes      = flag.Int("codes", 64, "device codes each polling client cycles through")
	peerBinary = flag.String("peer-binary", "", "zitadel/oidc example/server binary to compare client_credentials with")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the client_credentials runs (server and load generator share the process)")
	only       = flag.String("only", "", "comma-separated subset of cc,refresh,poll,dpop,mtls,sign,peer")
	rounds     = flag.Int("rounds", 1, "measure client_credentials and the peer this many times, interleaved, and keep the best of each")
	alg        = flag.String("alg", tokens.ES256, "signing algorithm of the access tokens: ES256 (the default of thingid serve), EdDSA or RS256")
	wrkBin     = flag.String("wrk", "", "wrk binary: drive client_credentials and the peer with wrk -t2 -c<c> instead of the Go load generator")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *conc < 1 || *dur <= 0 || *codes < 1 || *rounds < 1 {
		log.Fatal("token: -c, -d, -codes and -rounds must be positive")
	}
	if err := run(); err != nil {
		log.Fatalf("token: %v", err)
	}
}

func want(name string) bool {
	return *only == "" || slices.Contains(strings.Split(*only, ","), name)
}

// bench is the platform under test and its two listeners.
type bench struct {
	srv       *oauth.Server
	iss       *tokens.Issuer
	httpURL   string
	tlsURL    string
	tlsConfig *tls.Config
	ccID      string
	ccSecret  string
	deviceID  string
	// devices are things with platform certificates, one per client, for
	// the mutual-TLS call home.
	devices []device
}

type device struct {
	thingID string
	cert    tls.Certificate
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "thingid-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, shutdown, err := start(ctx, dir)
	if err != nil {
		return err
	}
	defer shutdown()
	fmt.Printf("concurrency %d clients\nduration %s per-run\nsigning %s\n", *conc, *dur, *alg)

	if want("sign") {
		rate := signRate(b.iss)
		fmt.Printf("issuer_access_token_sign %.0f tokens/s\n", rate)
	}
	if want("cc") || want("peer") {
		if err := compareClientCredentials(b); err != nil {
			return err
		}
	}
	if want("refresh") {
		for _, tr := range b.transports() {
			chains := make([]string, *conc)
			for i := range chains {
				if chains[i], err = b.pair(tr); err != nil {
					return fmt.Errorf("pairing over %s: %w", tr.name, err)
				}
			}
			r := load(tr.client, *conc, *dur, func(i int) func(*http.Client) error {
				return func(c *http.Client) error {
					next, err := rotate(c, tr.base, b.deviceID, chains[i])
					if err == nil {
						chains[i] = next
					}
					return err
				}
			})
			r.print("refresh_rotation_" + tr.name)
		}
	}
	if want("poll") {
		for _, tr := range b.transports() {
			pools := make([][]string, *conc)
			for i := range pools {
				for range *codes {
					dc, _, err := startDevice(tr.client(), tr.base, b.deviceID)
					if err != nil {
						return err
					}
					pools[i] = append(pools[i], dc)
				}
			}
			var pending, slow atomic.Int64
			r := load(tr.client, *conc, *dur, func(i int) func(*http.Client) error {
				n := 0
				return func(c *http.Client) error {
					dc := pools[i][n%len(pools[i])]
					n++
					code, err := poll(c, tr.base, b.deviceID, dc)
					switch code {
					case "authorization_pending":
						pending.Add(1)
					case "slow_down":
						slow.Add(1)
					}
					return err
				}
			})
			r.print("device_poll_" + tr.name)
			fmt.Printf("device_poll_%s_pending %d responses\ndevice_poll_%s_slow_down %d responses\n", tr.name, pending.Load(), tr.name, slow.Load())
		}
	}
	if want("dpop") {
		// Over plain HTTP only: a proof's htu must be the issuer's URL.
		tr := b.transports()[0]
		r := load(tr.client, *conc, *dur, func(i int) func(*http.Client) error {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			d, _ := sdk.NewDPoP(key, nil)
			return dpopRequest(tr.base+"/oauth2/token", b.ccID, b.ccSecret, d)
		})
		r.print("dpop_client_credentials_" + tr.name)
	}
	if want("mtls") {
		// Every request is a new connection: a device calling home does a
		// full handshake (no resumption) with its certificate, then asks
		// for a token with tls_client_auth.
		r := load(func() *http.Client { return nil }, *conc, *dur, func(i int) func(*http.Client) error {
			dev := b.devices[i%len(b.devices)]
			tc := b.tlsConfig.Clone()
			tc.Certificates = []tls.Certificate{dev.cert}
			tc.ClientSessionCache = nil
			tc.SessionTicketsDisabled = true
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {dev.thingID}}
			return func(*http.Client) error {
				status, body, err := postForm(c, b.tlsURL+"/oauth2/token", form, "", "")
				if err != nil {
					return err
				}
				if status != http.StatusOK || !bytes.Contains(body, []byte(`"access_token"`)) {
					return fmt.Errorf("call home: %d %s", status, body)
				}
				return nil
			}
		})
		r.print("mtls_call_home_tls")
	}
	return nil
}

// start wires the real components the way the oauth tests do.
func start(ctx context.Context, dir string) (*bench, func(), error) {
	quiet := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		return nil, nil, err
	}
	closers := []func(){func() { st.Close() }}
	shutdown := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*bench, func(), error) { shutdown(); return nil, nil, err }

	bus := events.New()
	ids := identity.New(st, bus, password.Policy{})
	if _, err := ids.CreateUser(ctx, "bench", &store.User{UserName: "alice", Status: store.StatusActive,
		Emails: []store.MultiValue{{Value: "alice@example.org"}}}, userPassword); err != nil {
		return fail(err)
	}

	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		plain.Close()
		return fail(err)
	}
	issuer := "http://" + plain.Addr().String()

	key := randomKey()
	tokenKey := randomKey()
	var mkey secrets.Key
	copy(mkey[:], randomKey())
	keys, err := tokens.NewKeys(ctx, st, tokens.KeysConfig{MasterKey: mkey, Alg: *alg, Bus: bus, Log: quiet})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, keys.Close)
	iss, err := tokens.NewIssuer(keys, issuer)
	if err != nil {
		return fail(err)
	}
	verifier, err := tokens.NewVerifier(keys, tokens.VerifierConfig{Issuer: issuer, Bus: bus, Log: quiet})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, verifier.Close)

	_, dca, err := pki.Open(filepath.Join(dir, "pki"), mkey, pki.Import{})
	if err != nil {
		return fail(err)
	}
	certs, err := certauth.New(ctx, certauth.Options{Store: st, Identity: ids, DeviceCA: dca, Bus: bus, Log: quiet})
	if err != nil {
		return fail(err)
	}
	closers = append(closers, certs.Close)

	mux := http.NewServeMux()
	admins := authn.NewAdmins(st, tokenKey)
	sessions := authn.NewSessions(ids, st.(authn.SessionStore), admins, authn.SessionOptions{
		Key: key, BaseURL: issuer, Audit: st, Logger: quiet, IPAttemptsPerMinute: 6000, IPBurst: 1000})
	sessions.Register(mux)
	srv, err := oauth.New(oauth.Options{
		Issuer: issuer, Store: st, Identities: ids, Tokens: iss, Keys: keys, Verifier: verifier,
		Bus: bus, Sessions: sessions, Key: key, Logger: quiet, Actor: authn.Actor,
		Admin: func(h http.Handler) http.Handler {
			return admins.Require(h, func(w http.ResponseWriter, _ *http.Request, _ error) {
				http.Error(w, "administrator credentials required", http.StatusUnauthorized)
			})
		},
		Scopes:         []string{"speaker:play", "telemetry:write"},
		ThingScopes:    []string{"telemetry:write"},
		Certificates:   certs,
		DeviceInterval: time.Second,
	})
	if err != nil {
		return fail(err)
	}
	srv.Register(mux)

	cert, pool, err := selfSigned()
	if err != nil {
		return fail(err)
	}
	hs := &http.Server{Handler: mux, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(plain)
	go hs.Serve(tls.NewListener(tlsLn, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert}))
	closers = append(closers, func() { hs.Close() })

	b := &bench{srv: srv, iss: iss, httpURL: issuer, tlsURL: "https://" + tlsLn.Addr().String(),
		tlsConfig: &tls.Config{RootCAs: pool}}
	cc, secret, err := srv.CreateClient(ctx, "bench", oauth.ClientSpec{Name: "bench backend",
		GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"telemetry:write"}})
	if err != nil {
		return fail(err)
	}
	b.ccID, b.ccSecret = cc.ID, secret
	dev, _, err := srv.CreateClient(ctx, "bench", oauth.ClientSpec{Name: "bench speaker app", Type: store.ClientPublic,
		GrantTypes: []string{oauth.GrantDeviceCode, oauth.GrantRefreshToken}, Scopes: []string{"speaker:play"}})
	if err != nil {
		return fail(err)
	}
	b.deviceID = dev.ID
	for i := range max(*conc, 1) {
		serial := fmt.Sprintf("BENCH-%04d", i)
		th, err := ids.CreateThing(ctx, "bench", &store.Thing{Type: store.ThingDevice, Manufacturer: "Acme", Model: "bench",
			SerialNumber: serial, Status: store.StatusActive})
		if err != nil {
			return fail(err)
		}
		dc, err := dca.IssueDevice(th.ID, serial, 0)
		if err != nil {
			return fail(err)
		}
		b.devices = append(b.devices, device{thingID: th.ID, cert: tls.Certificate{Certificate: dc.Chain, PrivateKey: dc.Key, Leaf: dc.Leaf}})
	}
	return b, shutdown, nil
}

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "thingid bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, pool, nil
}

type transport struct {
	name   string
	base   string
	client func() *http.Client // a new client with its own keep-alive connection
}

func (b *bench) transports() []transport {
	mk := func(tc *tls.Config) func() *http.Client {
		return func() *http.Client {
			return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				TLSClientConfig: tc, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, ForceAttemptHTTP2: false,
			}}
		}
	}
	return []transport{{"http", b.httpURL, mk(nil)}, {"tls", b.tlsURL, mk(b.tlsConfig)}}
}

// --- requests ---

func postForm(c *http.Client, u string, form url.Values, user, pass string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// dpopRequest is client_credentials with a fresh DPoP proof by d.
func dpopRequest(tokenURL, id, secret string, d *sdk.DPoP) func(*http.Client) error {
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	return func(c *http.Client) error {
		proof, err := d.Proof(http.MethodPost, tokenURL, "", "")
		if err != nil {
			return err
		}
		req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"token_type":"DPoP"`)) {
			return fmt.Errorf("DPoP client_credentials: %d %s", resp.StatusCode, b)
		}
		return nil
	}
}

func ccRequest(tokenURL, id, secret string) func(*http.Client) error {
	form := url.Values{"grant_type": {"client_credentials"}}
	return func(c *http.Client) error {
		status, body, err := postForm(c, tokenURL, form, id, secret)
		if err != nil {
			return err
		}
		if status != http.StatusOK || !bytes.Contains(body, []byte(`"access_token"`)) {
			return fmt.Errorf("client_credentials: %d %s", status, body)
		}
		return nil
	}
}

func rotate(c *http.Client, base, clientID, rt string) (string, error) {
	status, body, err := postForm(c, base+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {rt}}, "", "")
	if err != nil {
		return "", err
	}
	var tr struct {
		RefreshToken string `json:"refresh_token"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.RefreshToken == "" {
		return "", fmt.Errorf("refresh: %d %s", status, body)
	}
	return tr.RefreshToken, nil
}

func startDevice(c *http.Client, base, clientID string) (deviceCode, userCode string, err error) {
	status, body, err := postForm(c, base+"/oauth2/device_authorization", url.Values{"client_id": {clientID}}, "", "")
	if err != nil {
		return "", "", err
	}
	var d struct {
		DeviceCode string `json:"device_code"`
		UserCode   string `json:"user_code"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &d) != nil {
		return "", "", fmt.Errorf("device authorization: %d %s", status, body)
	}
	return d.DeviceCode, d.UserCode, nil
}

// poll asks for the token of a pending device code; the wire error code is
// the expected answer.
func poll(c *http.Client, base, clientID, deviceCode string) (string, error) {
	status, body, err := postForm(c, base+"/oauth2/token", url.Values{"grant_type": {oauth.GrantDeviceCode}, "client_id": {clientID}, "device_code": {deviceCode}}, "", "")
	if err != nil {
		return "", err
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	if status != http.StatusBadRequest || (e.Error != "authorization_pending" && e.Error != "slow_down") {
		return e.Error, fmt.Errorf("poll: %d %s", status, body)
	}
	return e.Error, nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// pair runs one device pairing over HTTP, as the device and alice's browser
// would, and returns the refresh token the device gets.
func (b *bench) pair(tr transport) (string, error) {
	dev := tr.client()
	dc, uc, err := startDevice(dev, tr.base, b.deviceID)
	if err != nil {
		return "", err
	}
	jar, _ := cookiejar.New(nil)
	br := tr.client()
	br.Jar = jar
	br.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	sign, _ := json.Marshal(map[string]string{"userName": "alice", "password": userPassword})
	resp, err := br.Post(tr.base+"/api/v1/signin", "application/json", bytes.NewReader(sign))
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("sign-in: %d", resp.StatusCode)
	}
	page, err := get(br, tr.base+"/device")
	if err != nil {
		return "", err
	}
	status, consent, err := postForm(br, tr.base+"/device", url.Values{"csrf": {csrf(page)}, "user_code": {uc}}, "", "")
	if err != nil || status != http.StatusOK {
		return "", fmt.Errorf("entering the user code: %d %v", status, err)
	}
	status, done, err := postForm(br, tr.base+"/device/decision", url.Values{"csrf": {csrf(string(consent))}, "user_code": {uc}, "decision": {"allow"}}, "", "")
	if err != nil || status != http.StatusOK {
		return "", fmt.Errorf("consent: %d %v %s", status, err, done)
	}
	status, body, err := postForm(dev, tr.base+"/oauth2/token", url.Values{"grant_type": {oauth.GrantDeviceCode}, "client_id": {b.deviceID}, "device_code": {dc}}, "", "")
	if err != nil {
		return "", err
	}
	var t struct {
		RefreshToken string `json:"refresh_token"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &t) != nil || t.RefreshToken == "" {
		return "", fmt.Errorf("device token: %d %s", status, body)
	}
	return t.RefreshToken, nil
}

func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return string(b), err
}

func csrf(page string) string {
	if m := csrfRE.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}

// --- load generator ---

type result struct {
	n, errs  int
	rate     float64
	p50, p99 time.Duration
	firstErr error
}

func (r result) print(name string) {
	fmt.Printf("%s %.0f req/s\n%s_p50 %.3f ms\n%s_p99 %.3f ms\n%s_errors %d requests\n",
		name, r.rate, name, ms(r.p50), name, ms(r.p99), name, r.errs)
	if r.firstErr != nil {
		fmt.Printf("# %s first error: %v\n", name, r.firstErr)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// load runs c workers, each with its own keep-alive client, calling the
// request made by mk(i) back to back for d, after one warm-up request each.
func load(newClient func() *http.Client, c int, d time.Duration, mk func(i int) func(*http.Client) error) result {
	var (
		mu    sync.Mutex
		lats  []time.Duration
		res   result
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	var stop atomic.Bool
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newClient()
			req := mk(i)
			warm := req(cl)
			var mine []time.Duration
			errs := 0
			var first error
			if warm != nil {
				errs, first = 1, warm
			}
			<-start
			for !stop.Load() {
				t0 := time.Now()
				err := req(cl)
				mine = append(mine, time.Since(t0))
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	t0 := time.Now()
	close(start)
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(t0)
	slices.Sort(lats)
	res.n = len(lats)
	res.rate = float64(res.n) / elapsed.Seconds()
	if len(lats) > 0 {
		res.p50 = lats[len(lats)*50/100]
		res.p99 = lats[min(len(lats)-1, len(lats)*99/100)]
	}
	return res
}

// signRate is tokens.Issuer's own ES256 rate with the same concurrency:
// the ceiling of the token endpoint.
func signRate(iss *tokens.Issuer) float64 {
	var n atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	t0 := time.Now()
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				now := time.Now()
				if _, err := iss.AccessToken(tokens.Claims{Subject: "bench", Audience: []string{"https://rs.example"}, ClientID: "bench",
					IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), GrantID: "g"}); err != nil {
					log.Fatalf("signing: %v", err)
				}
				n.Add(1)
			}
		}()
	}
	time.Sleep(min(*dur, 2*time.Second))
	stop.Store(true)
	wg.Wait()
	return float64(n.Load()) / time.Since(t0).Seconds()
}

// compareClientCredentials measures client_credentials on every transport
// and the peer's, -rounds times interleaved (the machine's other load then
// falls on both alike), and prints each round and the best of each.
func compareClientCredentials(b *bench) error {
	peerURL := ""
	if want("peer") && *peerBinary != "" {
		u, stop, err := peer(*peerBinary)
		if err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		defer stop()
		peerURL = u
	} else if want("peer") {
		fmt.Println("# peer skipped: no -peer-binary given")
	}
	if *cpuProfile != "" && want("cc") {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	best := map[string]result{}
	for round := 1; round <= *rounds; round++ {
		var line []string
		measure := func(name, tokenURL, id, secret string, client func() *http.Client) error {
			r, err := measureCC(tokenURL, id, secret, client)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if r.rate > best[name].rate {
				best[name] = r
			}
			line = append(line, fmt.Sprintf("%s %.0f", name, r.rate))
			return nil
		}
		if want("cc") {
			for _, tr := range b.transports() {
				if err := measure("client_credentials_"+tr.name, tr.base+"/oauth2/token", b.ccID, b.ccSecret, tr.client); err != nil {
					return err
				}
			}
		}
		if peerURL != "" {
			plain := func() *http.Client {
				return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
			}
			if err := measure("peer_zitadel_client_credentials_http", peerURL, "sid1", "verysecret", plain); err != nil {
				return err
			}
		}
		if *rounds > 1 {
			fmt.Printf("# round %d req/s: %s\n", round, strings.Join(line, ", "))
		}
	}
	for _, name := range []string{"client_credentials_http", "client_credentials_tls", "peer_zitadel_client_credentials_http"} {
		if r, ok := best[name]; ok {
			r.print(name)
		}
	}
	if cc, p := best["client_credentials_http"], best["peer_zitadel_client_credentials_http"]; cc.rate > 0 && p.rate > 0 {
		fmt.Printf("ratio_thingid_over_peer_client_credentials_http %.3f x\n", cc.rate/p.rate)
	}
	return nil
}

// measureCC loads a token endpoint with client_credentials requests of
// client id: with wrk when -wrk names it (wrk does not check certificates),
// else with the Go load generator and its clients.
func measureCC(tokenURL, id, secret string, client func() *http.Client) (result, error) {
	if *wrkBin == "" {
		return load(client, *conc, *dur, func(int) func(*http.Client) error {
			return ccRequest(tokenURL, id, secret)
		}), nil
	}
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	w, err := wrk.Run{Bin: *wrkBin, Threads: 2, Conns: *conc, Duration: *dur, URL: tokenURL,
		Method: http.MethodPost, Body: "grant_type=client_credentials",
		Headers: []string{"Content-Type: application/x-www-form-urlencoded", "Authorization: Basic " + basic}}.Do()
	if err != nil {
		return result{}, err
	}
	return result{rate: w.RPS, p50: w.P50, p99: w.P99}, nil
}

// peer starts zitadel/oidc's in-memory example server and returns its token
// endpoint, plain HTTP (the example serves no TLS), and a function that stops
// it. Its service user sid1 gets opaque bearer tokens, not signed JWTs.
func peer(bin string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	base := fmt.Sprintf("http://localhost:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	var md struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	for {
		resp, err := http.Get(base + "/.well-known/openid-configuration")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && err == nil && md.TokenEndpoint != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("the peer did not start within 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return md.TokenEndpoint, stop, nil
}
