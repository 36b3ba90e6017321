// Command uma measures UMA 2.0 on the real platform (the Platform of thingid
// serve, SQLite, in this process, over HTTPS on 127.0.0.1), in one run:
//
//   - RPT issuance: the UMA grant at /oauth2/token, -c clients at once, each
//     request redeeming a ticket that the gateway's 401 gave, with the
//     client's access token for the requesting party as claim token (a new
//     grant, its link to the share, a persisted claims token, the audit
//     record and a signed RPT per request). Tickets are single use, so they
//     are fetched before the clock starts; RPTs per second and the latency
//     of the grant are printed.
//   - The gateway's added latency per request, uma filter against oauth2
//     filter: wrk, a few connections, one after the other (-rounds times,
//     interleaved, best kept), on the direct upstream (this program in a
//     child process, plain HTTP), and through the gateway on a public route
//     (no filter), an oauth2 route (an access token with its scope) and a
//     uma route (an RPT with its permission) of the same match and rewrite.
//     Each route's p50 less the direct hit's is the latency the gateway
//     adds; their ratio, uma to oauth2, is the figure of issue 13 (target at
//     most 1.2). The CPU time this process (platform and gateway) spent per
//     request is printed too, with the same ratio.
//
// Both tokens are verified once and then served from the gateway's token
// cache, as for a client reusing its token.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thingid/thingid/bench/internal/loopback"
	"github.com/thingid/thingid/bench/internal/wrk"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

var (
	dur      = flag.Duration("d", 10*time.Second, "duration of each wrk run, and at most of the RPT issuance")
	clients  = flag.Int("c", 8, "concurrent clients asking RPTs")
	nTickets = flag.Int("tickets", 6000, "tickets fetched for the RPT issuance (it stops early when they run out)")
	conns    = flag.Int("light", 4, "wrk connections of the latency runs")
	rounds   = flag.Int("rounds", 2, "measure every gateway target this many times, interleaved, and keep the best")
	wrkBin   = flag.String("wrk", "/usr/bin/wrk", "wrk binary")
	upstream = flag.String(loopback.UpstreamFlag, "", "internal: serve the upstream on this address")
)

const password = "bench password for everyone"

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *upstream != "" {
		loopback.ServeUpstream(*upstream)
		return
	}
	if *clients < 1 || *nTickets < 1 || *conns < 1 || *rounds < 1 || *dur <= 0 {
		log.Fatal("uma bench: -c, -tickets, -light, -rounds and -d must be positive")
	}
	if err := run(); err != nil {
		log.Fatalf("uma bench: %v", err)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "thingid-uma-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	up, err := loopback.StartUpstream()
	if err != nil {
		return err
	}
	defer up.Stop()
	w, stop, err := start(dir, up.Addr)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("GOMAXPROCS %d, %d CPUs; RPT issuance with %d clients, latency with wrk -t1 -c%d -d%s, best of %d rounds\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), *clients, *conns, *dur, *rounds)
	if err := w.issuance(); err != nil {
		return err
	}
	return w.latency(up)
}

// world is the running platform and what the benchmark made in it.
type world struct {
	p           *server.Platform
	base, gw    string // the platform's and the gateway's URLs
	client      *http.Client
	app         creds  // bob's speaker, the requesting party's client
	music       creds  // the trusted resource server
	path        string // /{alice's resource, shared with bob}/telemetry, under each route's prefix
	claim       string // app's access token for bob: the claim token
	accessToken string // app's access token for bob, for the gateway
}

type creds struct{ id, secret string }

const routes = `
routes:
  - name: public
    match: {pathPattern: "/public/{resource}/telemetry"}
    upstream: {url: "http://%[1]s/api", rewrite: /telemetry}
    public: true
  - name: oauth2
    match: {pathPattern: "/oauth2/{resource}/telemetry"}
    upstream: {url: "http://%[1]s/api", rewrite: /telemetry}
    filters:
      - oauth2: {scopes: {"*": [telemetry]}}
  - name: uma
    match: {pathPattern: "/uma/{resource}/telemetry"}
    upstream: {url: "http://%[1]s/api", rewrite: /telemetry}
    filters:
      - uma: {resourceServer: %[2]s, resource: "{resource}", scopes: {"*": [telemetry]}}
`

// start opens a platform in dir with the gateway in front of upAddr, the
// clients and users, serves it, and shares alice's resource with bob.
func start(dir, upAddr string) (*world, func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := config.Default()
	cfg.Home = dir
	cfg.Log.Level = "warn" // no access log lines, as in bench/gateway
	cfg.MQTT.Enabled = false
	var err error
	if cfg.HTTP.Address, err = loopback.FreeAddr(); err != nil {
		cancel()
		return nil, nil, err
	}
	if cfg.Gateway.Address, err = loopback.FreeAddr(); err != nil {
		cancel()
		return nil, nil, err
	}
	if err := cfg.Validate(); err != nil {
		cancel()
		return nil, nil, err
	}
	p, err := server.Open(ctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	w := &world{p: p, base: cfg.HTTP.PublicURL, gw: "https://" + cfg.Gateway.Address}
	fail := func(err error) (*world, func(), error) {
		cancel()
		p.Close()
		return nil, nil, err
	}
	if err := w.prepare(ctx, upAddr); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Address)
	if err != nil {
		return fail(err)
	}
	// Errors only: wrk closing its connections at the end of a run is a
	// warning (TLS handshake EOF) per connection.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, logger, io.Discard) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			log.Printf("serve: %v", err)
		}
		p.Close()
	}
	if err := w.connect(dir, cfg); err != nil {
		stop()
		return nil, nil, err
	}
	if err := w.share(); err != nil {
		stop()
		return nil, nil, err
	}
	return w, stop, nil
}

// prepare makes the clients, users and tokens, and the routes file, before
// the platform serves (uma.trustedResourceServers is read at start).
func (w *world) prepare(ctx context.Context, upAddr string) error {
	srv, cleanup, err := w.p.OAuthAdmin(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer cleanup()
	mk := func(name string, grants, scopes []string) (creds, error) {
		c, secret, err := srv.CreateClient(ctx, "bench", oauth.ClientSpec{Name: name, GrantTypes: grants, Scopes: scopes})
		if err != nil {
			return creds{}, err
		}
		return creds{c.ID, secret}, nil
	}
	if w.music, err = mk("music", []string{"client_credentials"}, []string{uma.ScopeProtection}); err != nil {
		return err
	}
	if w.app, err = mk("speaker", []string{uma.GrantType}, nil); err != nil {
		return err
	}
	w.p.Config.UMA.TrustedResourceServers = []string{w.music.id}
	var bob *store.User
	for _, name := range []string{"alice", "bob"} {
		if bob, err = w.p.Identity.CreateUser(ctx, "bench", &store.User{UserName: name}, password); err != nil {
			return err
		}
	}
	keys, err := tokens.NewKeys(ctx, w.p.Store, tokens.KeysConfig{MasterKey: w.p.Key, Alg: w.p.Config.OAuth.SigningAlgorithm})
	if err != nil {
		return err
	}
	defer keys.Close()
	issuer, err := tokens.NewIssuer(keys, w.p.Config.HTTP.PublicURL)
	if err != nil {
		return err
	}
	// Bob's speaker holds an access token for bob under a grant (what the
	// device flow gives): the claim token, and the token of the oauth2 route.
	g := &store.Grant{ClientID: w.app.id, UserID: bob.ID, Scopes: []string{"telemetry"}, Created: time.Now()}
	if err := w.p.Store.CreateGrant(ctx, g); err != nil {
		return err
	}
	token := func(aud string) (string, error) {
		now := time.Now()
		return issuer.AccessToken(tokens.Claims{Subject: bob.ID, ClientID: w.app.id, Audience: []string{aud}, Scope: []string{"telemetry"},
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), GrantID: g.ID})
	}
	if w.claim, err = token(w.p.Config.HTTP.PublicURL); err != nil {
		return err
	}
	if w.accessToken, err = token(w.p.Config.Gateway.Audience); err != nil {
		return err
	}
	rdir := w.p.Config.Gateway.Routes
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(rdir, "bench.yaml"), []byte(fmt.Sprintf(routes, upAddr, w.music.id)), 0o600)
}

// connect waits until the platform answers, with a client trusting its CA.
func (w *world) connect(dir string, cfg config.Config) error {
	var pool *x509.CertPool
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pool == nil {
			if ca, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt")); err == nil {
				pool = x509.NewCertPool()
				pool.AppendCertsFromPEM(ca)
				tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, MaxIdleConnsPerHost: 2 * *clients}
				w.client = &http.Client{Timeout: 30 * time.Second, Transport: tr}
			}
			continue
		}
		resp, err := w.client.Get("https://" + cfg.HTTP.Address + "/healthz")
		if err == nil {
			resp.Body.Close()
			if err := loopback.WaitListening(cfg.Gateway.Address); err != nil {
				return err
			}
			// The platform's links name its public URL; requests go to its address.
			w.base = "https://" + cfg.HTTP.Address
			return nil
		}
	}
	return errors.New("the platform did not answer /healthz")
}

// share registers alice's resource at the music service and shares it with
// bob for telemetry, as alice on her session.
func (w *world) share() error {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {uma.ScopeProtection}}
	var pat struct {
		AccessToken string `json:"access_token"`
	}
	if err := request(w.client, "POST", w.base+"/oauth2/token", basic(w.music), form.Encode(), http.StatusOK, &pat); err != nil {
		return fmt.Errorf("PAT: %w", err)
	}
	var res struct {
		ID string `json:"_id"`
	}
	if err := request(w.client, "POST", w.base+"/uma/resource_set", map[string]string{"Authorization": "Bearer " + pat.AccessToken, "Content-Type": "application/json"},
		`{"name":"thermostat telemetry","resource_scopes":["telemetry"],"owner":"alice"}`, http.StatusCreated, &res); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	w.path = "/" + url.PathEscape(res.ID) + "/telemetry"
	jar, _ := cookiejar.New(nil)
	alice := *w.client
	alice.Jar = jar
	js := map[string]string{"Content-Type": "application/json"}
	if err := request(&alice, "POST", w.base+"/api/v1/signin", js, `{"userName":"alice","password":"`+password+`"}`, http.StatusOK, nil); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	body, _ := json.Marshal(map[string]any{"resourceId": res.ID, "user": "bob", "scopes": []string{"telemetry"}})
	if err := request(&alice, "POST", w.base+"/api/v1/uma/shares", js, string(body), http.StatusCreated, nil); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	return nil
}

// basic is the headers of a form post authenticated as client c (RFC 6749
// §2.3.1: the id and secret form-encoded inside Basic).
func basic(c creds) map[string]string {
	cred := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.id) + ":" + url.QueryEscape(c.secret)))
	return map[string]string{"Authorization": "Basic " + cred, "Content-Type": "application/x-www-form-urlencoded"}
}

// request sends body with the headers hdr and decodes the JSON answer,
// which must have status want, into out (nil: not read).
func request(c *http.Client, method, u string, hdr map[string]string, body string, want int, out any) error {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s %s", req.Method, req.URL.Path, resp.Status, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

var ticketRe = regexp.MustCompile(`^UMA realm="[^"]*", as_uri="[^"]*", ticket="([^"]+)"$`)

// ticket asks the gateway's uma route without a token: 401 and a ticket.
func (w *world) ticket() (string, error) {
	resp, err := w.client.Get(w.gw + "/uma" + w.path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	m := ticketRe.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
	if resp.StatusCode != http.StatusUnauthorized || m == nil {
		return "", fmt.Errorf("the uma route without a token: %s %q", resp.Status, resp.Header.Values("WWW-Authenticate"))
	}
	return m[1], nil
}

// rpt redeems ticket at the token endpoint for an RPT.
func (w *world) rpt(ticket string) (string, error) {
	form := url.Values{"grant_type": {uma.GrantType}, "ticket": {ticket}, "claim_token": {w.claim}, "claim_token_format": {uma.FormatAccessToken}}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := request(w.client, "POST", w.base+"/oauth2/token", basic(w.app), form.Encode(), http.StatusOK, &out); err != nil {
		return "", err
	}
	return out.AccessToken, nil
}

// parallel runs f(i) for i in [0, n) on -c goroutines and returns the
// first error; f's durations are collected when lat is not nil.
func parallel(n int, deadline time.Time, f func(i int) error) (done int, lat []time.Duration, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := i >= n || err != nil || (!deadline.IsZero() && time.Now().After(deadline))
				mu.Unlock()
				if stop {
					return
				}
				t0 := time.Now()
				e := f(i)
				took := time.Since(t0)
				mu.Lock()
				if e != nil && err == nil {
					err = e
				}
				if e == nil {
					done++
					lat = append(lat, took)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return done, lat, err
}

// issuance fetches the tickets, then redeems them against the clock.
func (w *world) issuance() error {
	tickets := make([]string, *nTickets)
	if _, _, err := parallel(len(tickets), time.Time{}, func(i int) (err error) {
		tickets[i], err = w.ticket()
		return err
	}); err != nil {
		return err
	}
	start := time.Now()
	n, lat, err := parallel(len(tickets), start.Add(*dur), func(i int) error {
		_, err := w.rpt(tickets[i])
		return err
	})
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("RPT issuance: %w", err)
	}
	slices.Sort(lat)
	fmt.Printf("\nRPT issuance (uma-ticket grant at /oauth2/token, claim token, HTTPS): %d RPTs in %s: %.0f RPTs/s, p50 %s, p99 %s\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	return nil
}

type target struct {
	name, url, auth string
	pids            []int
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // of the target's processes, per request
}

// latency runs wrk on each target, -rounds times interleaved, keeping each
// one's best round, and prints what the gateway adds.
func (w *world) latency(up *loopback.Upstream) error {
	rpt, err := w.ticket()
	if err == nil {
		rpt, err = w.rpt(rpt)
	}
	if err != nil {
		return err
	}
	self := []int{os.Getpid()}
	targets := []target{
		{"direct upstream", "http://" + up.Addr + "/api/telemetry", "", []int{up.Pid()}},
		{"gateway, public route", w.gw + "/public" + w.path, "", self},
		{"gateway, oauth2", w.gw + "/oauth2" + w.path, "Bearer " + w.accessToken, self},
		{"gateway, uma", w.gw + "/uma" + w.path, "Bearer " + rpt, self},
	}
	best := make([]result, len(targets))
	for range *rounds {
		for i, tg := range targets {
			run := wrk.Run{Bin: *wrkBin, Threads: 1, Conns: *conns, Duration: *dur, URL: tg.url}
			if tg.auth != "" {
				run.Headers = []string{"Authorization: " + tg.auth}
			}
			cpu0 := loopback.CPUTime(tg.pids)
			r, err := run.Do()
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			res := result{rps: r.RPS, p50: r.P50, p99: r.P99}
			if cpu1 := loopback.CPUTime(tg.pids); cpu0 >= 0 && cpu1 >= 0 && r.RPS > 0 {
				res.cpu = time.Duration(float64(cpu1-cpu0) / (r.RPS * dur.Seconds()))
			}
			if res.rps > best[i].rps {
				best[i] = res
			}
		}
	}
	fmt.Printf("\nlatency: wrk -t1 -c%d -d%s (the gateway over HTTPS, the upstream over HTTP)\n", *conns, *dur)
	fmt.Printf("%-22s %11s %9s %9s %10s %12s\n", "target", "requests/s", "p50", "p99", "p50 added", "CPU/request")
	for i, tg := range targets {
		b := best[i]
		added := "-"
		if i > 0 {
			added = (b.p50 - best[0].p50).Round(time.Microsecond).String()
		}
		fmt.Printf("%-22s %11.0f %9s %9s %10s %11.1fµs\n", tg.name, b.rps, b.p50.Round(time.Microsecond), b.p99.Round(time.Microsecond), added, float64(b.cpu)/float64(time.Microsecond))
	}
	oauth2, umaRes := best[2], best[3]
	fmt.Printf("\numa filter / oauth2 filter: added latency (p50) %.2fx, CPU per request %.2fx (target: at most 1.2x)\n",
		float64(umaRes.p50-best[0].p50)/float64(oauth2.p50-best[0].p50), float64(umaRes.cpu)/float64(oauth2.cpu))
	return nil
}
