// Command gateway measures the identity gateway against nginx on loopback:
// wrk drives, one after the other, a direct hit on an upstream, nginx
// proxying to it, the standard library's reverse proxy alone, the gateway
// with the oauth2 (JWT) filter, the gateway with oauth2 and throttle, and
// nginx proxying after asking the gateway's forward-auth endpoint (the same
// oauth2 and throttle filters) with auth_request, as docs/gateway.md shows. It
// prints requests/s under saturating load with the ratio to nginx and the
// CPU time each target's own processes spent per request (from /proc), then
// p50 and p99 under light load with the p99 each proxy adds to the direct
// hit.
//
// The upstream is this program in a child process (-upstream), so that it
// is the same for every run; nginx is Debian's, run as the current user
// with a temporary prefix; the gateway runs in this process on real keys on
// a SQLite store, with one valid access token (cached after its first
// verification, as a client sending the same token would see), next to the
// bare reverse proxy: GOGC and GOMEMLIMIT apply to both and not to the
// upstream. Everything is plain HTTP/1.1 with keep-alive on 127.0.0.1; access
// logs are off in nginx and the gateway alike unless -accesslog is given.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/thingid/thingid/bench/internal/loopback"
	"github.com/thingid/thingid/bench/internal/wrk"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/gateway"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

var (
	dur        = flag.Duration("d", 10*time.Second, "duration of each wrk run")
	conns      = flag.Int("c", 64, "wrk connections of the throughput runs")
	lightConns = flag.Int("light", 4, "wrk connections of the latency runs (0: no latency runs)")
	threads    = flag.Int("t", 2, "wrk threads")
	rounds     = flag.Int("rounds", 1, "measure every target this many times, interleaved, and keep the best")
	nginx      = flag.String("nginx", "/usr/sbin/nginx", "nginx binary")
	wrkBin     = flag.String("wrk", "/usr/bin/wrk", "wrk binary")
	upstream   = flag.String(loopback.UpstreamFlag, "", "internal: serve the upstream on this address")
	profile    = flag.String("cpuprofile", "", "write a CPU profile of the gateway (this process) during its runs")
	memprof    = flag.String("memprofile", "", "write an allocation profile of this process after the runs")
	only       = flag.String("only", "", "measure only the targets whose name contains this (the ratios need nginx and direct)")
	accessLog  = flag.String("accesslog", "", "write the gateway's access log to this file, as `thingid serve` writes it to stderr (default: off, as nginx's)")
)

const (
	issuer          = "https://id.bench.example"
	audience        = "urn:thingid:gateway"
	forwardAuthPath = "/.thingid/forward-auth"
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *upstream != "" {
		loopback.ServeUpstream(*upstream)
		return
	}
	if err := run(); err != nil {
		log.Fatalf("gateway bench: %v", err)
	}
}

type target struct {
	name   string
	url    string
	header string // an extra wrk header, "" for none
	// pids are the processes that serve the target (the proxy, or the
	// upstream for the direct hit), whose CPU time per request is reported.
	pids func() []int
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	// cpu is the CPU time the target's processes used per request: the cost
	// of the proxy itself, where requests/s also depend on what wrk, the
	// upstream and other processes leave it of the 2 cores.
	cpu time.Duration
}

func run() error {
	dir, err := os.MkdirTemp("", "thingid-gateway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	up, err := loopback.StartUpstream()
	if err != nil {
		return err
	}
	defer up.Stop()
	upAddr := up.Addr

	gwAddr, token, stopGateway, err := startGateway(dir, upAddr)
	if err != nil {
		return err
	}
	defer stopGateway()

	nginxAddr, authAddr, nginxPid, stopNginx, err := startNginx(dir, upAddr, gwAddr)
	if err != nil {
		return err
	}
	defer stopNginx()

	bareAddr, stopBare, err := startBareProxy(upAddr)
	if err != nil {
		return err
	}
	defer stopBare()

	upstreamPid := func() []int { return []int{up.Pid()} }
	nginxPids := func() []int { return append(loopback.Children(nginxPid), nginxPid) }
	self := func() []int { return []int{os.Getpid()} }
	targets := []target{
		{"direct upstream", "http://" + upAddr + "/api/telemetry", "", upstreamPid},
		{"nginx proxy", "http://" + nginxAddr + "/api/telemetry", "", nginxPids},
		{"Go ReverseProxy alone", "http://" + bareAddr + "/api/telemetry", "", self},
		{"gateway JWT", "http://" + gwAddr + "/jwt/telemetry", "Authorization: Bearer " + token, self},
		{"gateway JWT+throttle", "http://" + gwAddr + "/throttled/telemetry", "Authorization: Bearer " + token, self},
		{"nginx + forward-auth", "http://" + authAddr + "/throttled/telemetry", "Authorization: Bearer " + token,
			func() []int { return append(nginxPids(), os.Getpid()) }},
	}
	for _, tg := range targets { // every target answers 200 before it is measured
		if err := check(tg); err != nil {
			return err
		}
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("GOMAXPROCS %d, %d CPUs, %d round(s) of %s per target, best round kept\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), *rounds, *dur)
	// Throughput: enough connections to saturate the machine.
	heavy, err := measureAll(targets, *threads, *conns)
	if err != nil {
		return err
	}
	// Latency: a few connections, so that p99 is the proxy's work and not queueing.
	var light []result
	if *lightConns > 0 {
		if light, err = measureAll(targets, 1, *lightConns); err != nil {
			return err
		}
	}
	if *memprof != "" {
		f, err := os.Create(*memprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	fmt.Printf("\nthroughput: wrk -t%d -c%d -d%s\n", *threads, *conns, *dur)
	fmt.Printf("%-22s %12s %10s %10s %12s\n", "target", "requests/s", "vs nginx", "p99", "CPU/request")
	for i, tg := range targets {
		if b := heavy[i]; b.rps > 0 {
			fmt.Printf("%-22s %12.0f %10s %10s %12s\n", tg.name, b.rps, ratio(b.rps, heavy[1].rps), b.p99.Round(time.Microsecond), cpuText(b.cpu))
		}
	}
	if light == nil {
		return nil
	}
	fmt.Printf("\nlatency: wrk -t1 -c%d -d%s\n", *lightConns, *dur)
	fmt.Printf("%-22s %12s %10s %10s %14s\n", "target", "requests/s", "p50", "p99", "p99 added")
	for i, tg := range targets {
		if b := light[i]; b.rps > 0 {
			fmt.Printf("%-22s %12.0f %10s %10s %14s\n", tg.name, b.rps, b.p50.Round(time.Microsecond), b.p99.Round(time.Microsecond), (b.p99 - light[0].p99).Round(time.Microsecond))
		}
	}
	return nil
}

// measureAll runs every target (of -only) -rounds times, interleaved, with
// wrk's threads and connections, and keeps each target's best round.
func measureAll(targets []target, threads, conns int) ([]result, error) {
	best := make([]result, len(targets))
	for r := 0; r < *rounds; r++ {
		for i, tg := range targets {
			if *only != "" && !strings.Contains(tg.name, *only) {
				continue
			}
			res, err := measure(tg, threads, conns)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", tg.name, err)
			}
			if res.rps > best[i].rps {
				best[i] = res
			}
		}
	}
	return best, nil
}

func check(tg target) error {
	req, _ := http.NewRequest(http.MethodGet, tg.url, nil)
	if tg.header != "" {
		k, v, _ := strings.Cut(tg.header, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", tg.name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answers %s", tg.name, resp.Status)
	}
	return nil
}

// measure runs wrk against tg and reads its summary.
func measure(tg target, threads, conns int) (result, error) {
	run := wrk.Run{Bin: *wrkBin, Threads: threads, Conns: conns, Duration: *dur, URL: tg.url}
	if tg.header != "" {
		run.Headers = []string{tg.header}
	}
	cpu0 := loopback.CPUTime(tg.pids())
	w, err := run.Do()
	if err != nil {
		return result{}, err
	}
	cpu1 := loopback.CPUTime(tg.pids())
	res := result{rps: w.RPS, p50: w.P50, p99: w.P99}
	if cpu0 >= 0 && cpu1 >= 0 && w.RPS > 0 {
		res.cpu = time.Duration(float64(cpu1-cpu0) / (w.RPS * dur.Seconds()))
	}
	return res, nil
}

// ratio is rps to nginx's, "-" when nginx was not measured (-only).
func ratio(rps, nginx float64) string {
	if nginx == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", rps/nginx)
}

func cpuText(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// nginxConf proxies to the upstream with keep-alive connections, as one
// would configure nginx in front of an API; the workers match the CPUs.
const nginxConf = `
daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream api { server %[3]s; keepalive 128; }
    upstream thingid { server %[5]s; keepalive 128; }
    server {
        listen %[2]s;
        location / {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen %[4]s;
        location = /_thingid_auth {
            internal;
            proxy_pass http://thingid%[6]s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
        location / {
            auth_request /_thingid_auth;
            auth_request_set $thingid_subject $upstream_http_x_thingid_subject;
            auth_request_set $thingid_thing $upstream_http_x_thingid_thing;
            proxy_set_header X-Thingid-Subject $thingid_subject;
            proxy_set_header X-Thingid-Thing $thingid_thing;
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`

// startNginx returns nginx's address and the pid of its master process.
// startNginx runs nginx with two servers: a plain proxy to the upstream,
// and one that asks the gateway's forward-auth endpoint at gwAddr first.
func startNginx(dir, upAddr, gwAddr string) (proxyAddr, authAddr string, pid int, stop func(), err error) {
	if proxyAddr, err = loopback.FreeAddr(); err != nil {
		return "", "", 0, nil, err
	}
	if authAddr, err = loopback.FreeAddr(); err != nil {
		return "", "", 0, nil, err
	}
	prefix := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(prefix, 0o700); err != nil {
		return "", "", 0, nil, err
	}
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, prefix, proxyAddr, upAddr, authAddr, gwAddr, forwardAuthPath)), 0o600); err != nil {
		return "", "", 0, nil, err
	}
	cmd := exec.Command(*nginx, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", "", 0, nil, fmt.Errorf("start nginx: %w", err)
	}
	stop = func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
	for _, a := range []string{proxyAddr, authAddr} {
		if err := loopback.WaitListening(a); err != nil {
			stop()
			return "", "", 0, nil, err
		}
	}
	return proxyAddr, authAddr, cmd.Process.Pid, stop, nil
}

// startBareProxy is the standard library's reverse proxy with nothing
// around it and the gateway's transport settings: the floor under the gateway.
func startBareProxy(upAddr string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.DisableCompression = 1024, 256, true
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: upAddr}) },
		Transport:  t,
		BufferPool: pool{},
		ErrorLog:   log.New(io.Discard, "", 0), // wrk's connections closing at the end of a run
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// pool reuses the proxy's copy buffers, as the gateway does.
type pool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (pool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (pool) Put(b []byte) { buffers.Put(&b) }

const routes = `
routes:
  - name: jwt
    match: {pathPrefix: /jwt}
    upstream: {url: "http://%[1]s/api", stripPrefix: true}
    filters:
      - oauth2: {scopes: {"*": [telemetry]}}
  - name: throttled
    match: {pathPrefix: /throttled}
    upstream: {url: "http://%[1]s/api", stripPrefix: true}
    filters:
      - oauth2: {scopes: {"*": [telemetry]}}
      - throttle:
          key: [thing, subject]
          rate: {requests: 100000000, per: 1s}
`

// startGateway runs the real gateway on real keys, with the routes above.
func startGateway(dir, upAddr string) (string, string, func(), error) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		return "", "", nil, err
	}
	var mk secrets.Key
	rand.Read(mk[:])
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	gwLog, logFile := quiet, io.Closer(io.NopCloser(nil))
	if *accessLog != "" {
		f, err := os.Create(*accessLog)
		if err != nil {
			return "", "", nil, err
		}
		gwLog, logFile = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo})), f
	}
	bus := events.New()
	keys, err := tokens.NewKeys(ctx, st, tokens.KeysConfig{MasterKey: mk, Bus: bus, Log: quiet})
	if err != nil {
		return "", "", nil, err
	}
	iss, err := tokens.NewIssuer(keys, issuer)
	if err != nil {
		return "", "", nil, err
	}
	v, err := tokens.NewVerifier(keys, tokens.VerifierConfig{Issuer: issuer, Bus: bus, Log: quiet})
	if err != nil {
		return "", "", nil, err
	}
	tok, err := iss.AccessToken(tokens.Claims{Subject: "thing-0001", ThingID: "thing-0001", ClientID: "bench", Scope: []string{"telemetry"},
		Audience: []string{audience}, GrantID: "grant-bench", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		return "", "", nil, err
	}
	routesDir := filepath.Join(dir, "routes")
	if err := os.MkdirAll(routesDir, 0o700); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(filepath.Join(routesDir, "bench.yaml"), []byte(fmt.Sprintf(routes, upAddr)), 0o600); err != nil {
		return "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	g, err := gateway.New(gateway.Options{
		RoutesDir: routesDir, Audience: audience, PublicURL: "https://" + ln.Addr().String(),
		Verifier: v, Issuer: iss, Bus: bus, Replay: st, Log: gwLog,
		ForwardAuthPath: forwardAuthPath, ForwardAuthProxy: gateway.ProxyNginx, TrustedProxies: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(32, 32)}},
	})
	if err != nil {
		ln.Close()
		return "", "", nil, err
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(quiet.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("gateway: %v", err)
		}
	}()
	stop := func() {
		_ = srv.Close()
		g.Close()
		v.Close()
		keys.Close()
		st.Close()
		logFile.Close()
	}
	return ln.Addr().String(), tok, stop, nil
}
