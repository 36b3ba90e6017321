package gateway

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/tokens"
)

// docSnippet is the one fenced block of docs/gateway.md in the given language
// (the nginx configuration the documentation tells operators to use): the
// tests run that very text, so the two cannot drift apart.
func docSnippet(t testing.TB, lang string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for rest := string(doc); ; {
		_, after, ok := strings.Cut(rest, "\n```"+lang+"\n")
		if !ok {
			break
		}
		block, tail, ok := strings.Cut(after, "\n```\n")
		if !ok {
			t.Fatalf("docs/gateway.md: an unterminated %s block", lang)
		}
		blocks, rest = append(blocks, block+"\n"), tail
	}
	if len(blocks) != 1 {
		t.Fatalf("docs/gateway.md has %d %s blocks, want the one the tests run", len(blocks), lang)
	}
	return blocks[0]
}

// nginxEnv is Debian's nginx, configured with the snippet of
// docs/gateway.md, in front of e's upstream and asking e's gateway.
type nginxEnv struct {
	*env
	addr string // nginx's listener, 127.0.0.1:port
	dir  string
}

// gatewayFromNginx trusts the one address nginx comes from, so that a client
// on another loopback address (127.0.0.2) is not a trusted proxy.
func gatewayFromNginx(o *Options) {
	withForwardAuth(o)
	_, nginx, _ := net.ParseCIDR("127.0.0.1/32")
	o.TrustedProxies = []*net.IPNet{nginx}
}

// startNginx runs nginx with the documented snippet; the doc's example
// addresses and paths are replaced by the test's, each of which must appear
// in the snippet exactly once.
func startNginx(t *testing.T, e *env) *nginxEnv {
	t.Helper()
	needTool(t, "/usr/sbin/nginx", "nginx")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "gateway-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	snippet := docSnippet(t, "nginx")
	for _, r := range [][2]string{
		{"https://127.0.0.1:9443/.thingid/forward-auth;", "https://" + e.srv.Listener.Addr().String() + forwardPath + ";"},
		{"/var/lib/thingid/pki/ca.crt;", caFile + ";"},
		// httptest's certificate names example.com, not localhost.
		{"proxy_ssl_name localhost;", "proxy_ssl_name example.com;"},
		{"proxy_pass http://127.0.0.1:9000;", "proxy_pass " + e.upstream.URL + ";"},
	} {
		if n := strings.Count(snippet, r[0]); n != 1 {
			t.Fatalf("docs/gateway.md's nginx snippet has %q %d times, want once (update the test with the doc)", r[0], n)
		}
		snippet = strings.Replace(snippet, r[0], r[1], 1)
	}
	conf := fmt.Sprintf(`
daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
%[3]s
    }
}
`, dir, addr, snippet)
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/nginx", "-p", dir, "-c", confFile, "-e", filepath.Join(dir, "error.log"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	eventually(t, "nginx listens", func() bool {
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &nginxEnv{env: e, addr: addr, dir: dir}
}

// do sends a request to nginx from 127.0.0.1; header is name, value pairs.
func (n *nginxEnv) do(method, path string, header ...string) (*http.Response, string) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.addr+path, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return n.send(&http.Client{}, req)
}

func (n *nginxEnv) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// clientFrom is a client of e's gateway whose connections come from the
// local address ip (another loopback address than the trusted proxy's).
func clientFrom(e *env, ip string) *http.Client {
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}

// nginx in front of an upstream asks the gateway with auth_request, as
// docs/gateway.md shows.
func TestNginxAuthRequest(t *testing.T) {
	e := newEnv(t, forwardRoutes, gatewayFromNginx)
	n := startNginx(t, e)
	tok := e.token("telemetry")
	resp, body := n.do(http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok, HeaderSubject, "admin", HeaderToken, "forged")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed request through nginx: %d %s\n%s", resp.StatusCode, body, n.errorLog())
	}
	got := upstreamSaw(t, body)
	if got.Header.Get(HeaderSubject) != "user-alice" || got.Header.Get(HeaderToken) != "" || got.Header.Get(HeaderScope) != "telemetry" {
		t.Fatalf("upstream behind nginx saw %v", got.Header)
	}
	cases := []struct {
		name   string
		path   string
		header []string
		status int
		check  func(*http.Response) bool
	}{
		{"no token", "/telemetry/x", nil, 401, func(r *http.Response) bool {
			return strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `Bearer realm="thingid"`)
		}},
		{"wrong audience", "/telemetry/x", []string{"Authorization", "Bearer " + e.token("telemetry", func(c *tokens.Claims) { c.Audience = []string{"x"} })}, 401,
			func(r *http.Response) bool {
				return strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token")
			}},
		{"insufficient scope", "/admin/x", []string{"Authorization", "Bearer " + tok}, 403, nil},
		{"traversal", "/telemetry/%2e%2e/admin/x", []string{"Authorization", "Bearer " + tok}, 403, nil},
		{"no route", "/nowhere", []string{"Authorization", "Bearer " + tok}, 403, nil},
	}
	for _, tc := range cases {
		resp, body := n.do(http.MethodGet, tc.path, tc.header...)
		if resp.StatusCode != tc.status || (tc.check != nil && !tc.check(resp)) || strings.Contains(body, `"method"`) {
			t.Errorf("%s: %d %v %s", tc.name, resp.StatusCode, resp.Header, body)
		}
	}
	for i := range 3 {
		resp, _ := n.do(http.MethodGet, "/limited/x", "Authorization", "Bearer "+tok)
		want := map[bool]int{true: 200, false: 429}[i < 2]
		if resp.StatusCode != want || (want == 429 && resp.Header.Get("Retry-After") == "") {
			t.Fatalf("limited request %d through nginx: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if n, _ := strconv.Atoi(fmt.Sprint(e.counter("thingid_gateway_requests_total", map[string]string{"route": "limited", "code": "429"}))); n != 1 {
		t.Errorf("forward-auth 429s counted: %d", n)
	}
}

// spoofRoutes has a public route to pretend to be asking for, and a route
// whose DELETE needs more than a read-only token.
const spoofRoutes = forwardRoutes + `
  - name: records
    match: {pathPrefix: /records, methods: [GET, DELETE]}
    upstream: {url: UPSTREAM}
    filters:
      - oauth2: {scopes: {GET: [records:read], DELETE: [records:write]}}
`

// The attack of issue 12: nginx passes the client's own headers to the
// auth_request subrequest, so a client names another method and URI in the
// headers the gateway reads and gets the decision for that request instead.
func TestNginxForwardAuthSpoofedHeaders(t *testing.T) {
	e := newEnv(t, spoofRoutes, gatewayFromNginx)
	n := startNginx(t, e)
	readOnly := e.token("records:read")
	if resp, body := n.do(http.MethodGet, "/records/1", "Authorization", "Bearer "+readOnly); resp.StatusCode != http.StatusOK {
		t.Fatalf("a read with a read-only token: %d %s\n%s", resp.StatusCode, body, n.errorLog())
	}
	spoofs := map[string][]string{
		"Traefik's names":      {"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x"},
		"nginx's names":        {"X-Original-Method", "GET", "X-Original-Uri", "/public/x"},
		"both":                 {"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x", "X-Original-Method", "GET", "X-Original-Uri", "/public/x"},
		"underscores":          {"X_Forwarded_Method", "GET", "X_Forwarded_Uri", "/public/x"},
		"host and proto":       {"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x", "X-Forwarded-Host", "elsewhere.example", "X-Forwarded-Proto", "http"},
		"read-only method too": {"X-Forwarded-Method", "GET", "X-Original-Method", "GET"},
	}
	for name, spoof := range spoofs {
		// No token at all, for a protected route.
		resp, body := n.do(http.MethodDelete, "/records/1", spoof...)
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s, no token: DELETE /records/1 through nginx answered %d %s", name, resp.StatusCode, body)
		}
		resp, body = n.do(http.MethodGet, "/admin/x", spoof...)
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s, no token: GET /admin/x through nginx answered %d %s", name, resp.StatusCode, body)
		}
		// A read-only token and a spoofed method.
		resp, body = n.do(http.MethodDelete, "/records/1", append([]string{"Authorization", "Bearer " + readOnly}, spoof...)...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s, read-only token: DELETE /records/1 through nginx answered %d %s", name, resp.StatusCode, body)
		}
	}
	// A client certificate header of the client's own is not one nginx verified.
	resp, body := n.do(http.MethodGet, "/records/1", "Authorization", "Bearer "+readOnly, "X-Ssl-Client-Cert", "garbage", "X-Forwarded-Tls-Client-Cert", "garbage")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("client certificate headers of the client's own changed the answer: %d %s", resp.StatusCode, body)
	}

	// The same headers sent straight to the gateway from 127.0.0.2, which is
	// not the trusted proxy: forward-auth is refused whatever they say.
	direct := clientFrom(e, "127.0.0.2")
	for name, spoof := range spoofs {
		resp, body := e.do(direct, http.MethodGet, forwardPath, spoof...)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "gateway.trustedProxies") {
			t.Errorf("%s, from 127.0.0.2: %d %s", name, resp.StatusCode, body)
		}
	}
}

// The documented nginx snippet sets or clears every header the gateway reads
// from a proxy in its auth_request location: nginx passes on the client's
// own otherwise.
func TestNginxSnippetSetsEveryForwardingHeader(t *testing.T) {
	snippet := docSnippet(t, "nginx")
	_, auth, ok := strings.Cut(snippet, "location = /_thingid_auth {")
	if !ok {
		t.Fatal("docs/gateway.md's nginx snippet has no location = /_thingid_auth")
	}
	auth, _, _ = strings.Cut(auth, "\n}")
	set := map[string]bool{}
	for _, line := range strings.Split(auth, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "proxy_set_header" {
			set[http.CanonicalHeaderKey(f[1])] = true
		}
	}
	for _, h := range ForwardingHeaders {
		if !set[h] {
			t.Errorf("the nginx snippet of docs/gateway.md neither sets nor clears %s, which the gateway reads", h)
		}
	}
}

// The documented nginx snippet sets every identity header on the request to
// the upstream, from the answer of forward-auth (empty when the answer has
// none): nginx passes on the client's own otherwise.
func TestNginxSnippetSetsEveryIdentityHeader(t *testing.T) {
	snippet := docSnippet(t, "nginx")
	_, loc, ok := strings.Cut(snippet, "location / {")
	if !ok {
		t.Fatal("docs/gateway.md's nginx snippet has no location /")
	}
	loc, _, _ = strings.Cut(loc, "\n}")
	set := map[string]bool{}
	for _, line := range strings.Split(loc, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "proxy_set_header" {
			set[http.CanonicalHeaderKey(f[1])] = true
		}
	}
	for _, h := range identityHeaders {
		if !set[h] {
			t.Errorf("the nginx snippet of docs/gateway.md does not set %s on the upstream request: a client's own would pass", h)
		}
	}
}

// Behind nginx, a uma route's RPT passes and the upstream learns the
// resource and its scopes from the gateway, never from the client.
func TestNginxUMARoute(t *testing.T) {
	e := newEnv(t, umaRoutes, gatewayFromNginx, withUMA)
	n := startNginx(t, e)
	rpt := e.rpt(tokens.Permission{ResourceID: "l1", Scopes: []string{"play"}})
	resp, body := n.do(http.MethodGet, "/playlists/l1", "Authorization", "Bearer "+rpt, HeaderResource, "l2", HeaderResourceScopes, "edit")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("an RPT through nginx: %d %s\n%s", resp.StatusCode, body, n.errorLog())
	}
	if got := upstreamSaw(t, body); got.Header.Get(HeaderResource) != "l1" || got.Header.Get(HeaderResourceScopes) != "play" {
		t.Fatalf("upstream behind nginx saw %v", got.Header)
	}
	// Without the permission, and no authorization server to give a
	// ticket, nginx answers the gateway's 403.
	if resp, body := n.do(http.MethodPut, "/playlists/l1", "Authorization", "Bearer "+rpt, HeaderResource, "l1"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a PUT without the permission: %d %s", resp.StatusCode, body)
	}
}
