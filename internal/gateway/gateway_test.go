package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Reloading routes changes what is served without touching requests or
// connections in flight.
func TestReloadKeepsConnections(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first\n"))
		if r.URL.Query().Get("hold") == "" {
			return
		}
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("second\n"))
	}))
	defer slow.Close()
	routes := apiRoutes + `
  - name: stream
    match: {pathPrefix: /stream}
    upstream: {url: ` + slow.URL + `}
    public: true
`
	e := newEnv(t, routes)
	c := e.srv.Client()
	resp, err := c.Get(e.srv.URL + "/stream?hold=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); line != "first\n" {
		t.Fatalf("first chunk %q", line)
	}

	// A broken file changes nothing.
	e.writeRoutes("zz-broken.yaml", "routes: [{name: x, match: {}}]")
	eventually(t, "the broken file is seen", func() bool {
		return e.counter("thingid_gateway_route_reloads_total", map[string]string{"result": "error"}) > 0
	})
	if r, body := e.do(c, http.MethodGet, "/public/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("routes after a broken file: %d %s", r.StatusCode, body)
	}
	// A good change is served, while the stream of the old routes goes on.
	e.writeRoutes("zz-broken.yaml", `
routes:
  - {name: added, match: {pathPrefix: /added}, upstream: {url: UPSTREAM/new}, public: true}
`)
	eventually(t, "the new route is served", func() bool {
		r, _ := e.do(c, http.MethodGet, "/added/x")
		return r.StatusCode == http.StatusOK
	})
	e.writeRoutes("routes.yaml", apiRoutes) // the stream's route is gone now
	eventually(t, "the stream route is removed", func() bool {
		r, _ := e.do(c, http.MethodGet, "/stream")
		return r.StatusCode == http.StatusNotFound
	})
	close(release)
	if rest, err := io.ReadAll(rd); err != nil || string(rest) != "second\n" {
		t.Fatalf("the stream after reloads: %q, %v", rest, err)
	}
	if e.counter("thingid_gateway_routes", nil) != 5 {
		t.Errorf("routes gauge %v", e.counter("thingid_gateway_routes", nil))
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Thingid-Subject") != "user-alice" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo
	}))
	defer ws.Close()
	e := newEnv(t, apiRoutes+`
  - name: ws
    match: {path: /ws}
    upstream: {url: `+ws.URL+`}
    filters: [oauth2]
`)
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Authorization", "Bearer "+e.token(""))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade: %d %s", resp.StatusCode, b)
	}
	rw := resp.Body.(io.ReadWriter)
	if _, err := rw.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(rw, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the upgraded connection: %q %v", buf, err)
	}
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLogAndMetrics(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, apiRoutes, func(o *Options) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	e.do(nil, http.MethodGet, "/telemetry/a", "Authorization", "Bearer "+e.token("telemetry"))
	e.do(nil, http.MethodGet, "/telemetry/a")
	e.do(nil, http.MethodGet, "/nowhere")
	out := logs.String()
	for _, want := range []string{
		`msg=gateway route=telemetry method=GET path=/telemetry/a status=200 decision=allow subject=user-alice client=client-app ip=127.0.0.1 latency=`,
		`route=telemetry method=GET path=/telemetry/a status=401 decision=no_token subject="" client=""`,
		`route=unmatched method=GET path=/nowhere status=404 decision=no_route`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("access log lacks %q:\n%s", want, out)
		}
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"thingid_gateway_requests_total", map[string]string{"route": "telemetry", "code": "200"}, 1},
		{"thingid_gateway_requests_total", map[string]string{"route": "telemetry", "code": "401"}, 1},
		{"thingid_gateway_denials_total", map[string]string{"route": "telemetry", "reason": "no_token"}, 1},
		{"thingid_gateway_denials_total", map[string]string{"route": "unmatched", "reason": "no_route"}, 1},
		{"thingid_gateway_requests_total", map[string]string{"route": "unmatched", "code": "404"}, 1},
		{"thingid_gateway_upstream_duration_seconds", map[string]string{"route": "telemetry"}, 1},
		{"thingid_gateway_request_duration_seconds", map[string]string{"route": "telemetry"}, 2},
	}
	for _, c := range checks {
		if got := e.counter(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	e := newEnv(t, `
routes:
  - {name: dead, match: {pathPrefix: /}, upstream: {url: "http://`+dead+`"}, public: true}
`)
	resp, body := e.do(nil, http.MethodGet, "/x")
	if resp.StatusCode != http.StatusBadGateway || problemOf(t, resp, body).Error != "upstream_unavailable" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestTrustedProxiesAndHeadersFilter(t *testing.T) {
	routes := `
routes:
  - name: api
    match: {pathPrefix: /}
    upstream: {url: UPSTREAM}
    public: true
    filters:
      - headers:
          request: {set: {X-Env: test}, remove: [Cookie]}
          response: {remove: [X-Upstream], set: {X-Frame-Options: DENY}}
      - throttle: {key: [ip], rate: {requests: 1, per: 1m}}
`
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	e := newEnv(t, routes, func(o *Options) { o.TrustedProxies = []*net.IPNet{loopback} })
	resp, body := e.do(nil, http.MethodGet, "/x", "X-Forwarded-For", "203.0.113.9, 127.0.0.2", "Cookie", "secret=1")
	got := upstreamSaw(t, body)
	if got.Header.Get("X-Forwarded-For") != "203.0.113.9, 127.0.0.2, 127.0.0.1" || got.Header.Get("X-Env") != "test" || got.Header.Get("Cookie") != "" {
		t.Fatalf("upstream headers %v", got.Header)
	}
	if resp.Header.Get("X-Upstream") != "" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("response headers %v", resp.Header)
	}
	// The client address is the first untrusted hop: each has its own budget.
	if resp, _ := e.do(nil, http.MethodGet, "/x", "X-Forwarded-For", "203.0.113.9"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("same client again: %d", resp.StatusCode)
	}
	if resp, _ := e.do(nil, http.MethodGet, "/x", "X-Forwarded-For", "198.51.100.1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("another client: %d", resp.StatusCode)
	}

	// Without trust, X-Forwarded-For from the client is not believed.
	e2 := newEnv(t, routes)
	_, body = e2.do(nil, http.MethodGet, "/x", "X-Forwarded-For", "203.0.113.9")
	if got := upstreamSaw(t, body).Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Fatalf("untrusted X-Forwarded-For passed: %q", got)
	}
	if resp, _ := e2.do(nil, http.MethodGet, "/x", "X-Forwarded-For", "198.51.100.1"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("spoofed X-Forwarded-For escaped throttling: %d", resp.StatusCode)
	}
}

// No forwarding header of an untrusted peer reaches the upstream of a
// proxied route: an upstream that believes the gateway's must not get a
// client's instead. A trusted proxy's pass.
func TestUntrustedForwardingHeadersRemoved(t *testing.T) {
	routes := `
routes:
  - name: api
    match: {pathPrefix: /}
    upstream: {url: UPSTREAM}
    public: true
`
	spoof := []string{"Forwarded", "for=203.0.113.9", "X-Real-Ip", "203.0.113.9", "X-Ssl-Client-Cert", "forged",
		"X-Forwarded-Tls-Client-Cert", "forged", "X-Forwarded-Client-Cert", "Hash=1", "X-Original-Uri", "/admin",
		"X-Forwarded-Method", "DELETE", "X_Forwarded_Uri", "/admin", "X-Forwarded-Host", "evil.example"}
	for _, trusted := range []bool{false, true} {
		e := newEnv(t, routes, func(o *Options) {
			if trusted {
				_, n, _ := net.ParseCIDR("127.0.0.1/32")
				o.TrustedProxies = []*net.IPNet{n}
			}
		})
		_, body := e.do(nil, http.MethodGet, "/x", spoof...)
		got := upstreamSaw(t, body).Header
		for i := 0; i < len(spoof); i += 2 {
			name := spoof[i]
			if name == "X-Forwarded-Host" || name == "Forwarded" {
				continue // httputil.ReverseProxy sets the one, removes the other
			}
			if kept := len(got.Values(name)) > 0 || len(got[name]) > 0; kept != trusted {
				t.Errorf("trusted peer %v: %s kept %v: %v", trusted, name, kept, got)
			}
		}
		if got.Get("X-Forwarded-Host") == "evil.example" || got.Get("Forwarded") != "" {
			t.Errorf("trusted peer %v: the upstream got the client's X-Forwarded-Host or Forwarded: %v", trusted, got)
		}
	}
}

func TestNewChecksOptions(t *testing.T) {
	e := newEnv(t, apiRoutes)
	base := Options{RoutesDir: t.TempDir(), Audience: testAudience, PublicURL: "https://gw.example", Verifier: e.verifier, Replay: e.st}
	for name, edit := range map[string]func(*Options){
		"no audience":      func(o *Options) { o.Audience = "" },
		"no verifier":      func(o *Options) { o.Verifier = nil },
		"no replay":        func(o *Options) { o.Replay = nil },
		"http public URL":  func(o *Options) { o.PublicURL = "http://gw.example" },
		"public URL path":  func(o *Options) { o.PublicURL = "https://gw.example/x" },
		"bad introspector": func(o *Options) { o.Introspection = &IntrospectionOptions{URL: "https://as.example/i"} },
	} {
		o := base
		edit(&o)
		if g, err := New(o); err == nil {
			g.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	e.writeRoutes("bad.yaml", "routes: [{name: a}]")
	o := base
	o.RoutesDir = e.dir
	if g, err := New(o); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		if g != nil {
			g.Close()
		}
		t.Errorf("a bad routes file at start: %v", err)
	}
}
