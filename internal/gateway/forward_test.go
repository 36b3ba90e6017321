package gateway

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/tokens"
)

const forwardPath = "/.thingid/forward-auth"

const forwardRoutes = apiRoutes + `
  - name: limited
    match: {pathPrefix: /limited}
    upstream: {url: UPSTREAM}
    filters:
      - oauth2
      - throttle: {key: [subject], rate: {requests: 2, per: 1m}}
`

func withForwardAuth(o *Options) {
	o.ForwardAuthPath = forwardPath
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	o.TrustedProxies = []*net.IPNet{loopback}
}

// Traefik's ForwardAuth describes the request in X-Forwarded-* headers.
func TestForwardAuthTraefik(t *testing.T) {
	e := newEnv(t, forwardRoutes, withForwardAuth)
	tok := e.token("telemetry", func(c *tokens.Claims) { c.ThingID = "thing-9" })
	ask := func(method, uri string, header ...string) (*http.Response, string) {
		h := []string{"X-Forwarded-Method", method, "X-Forwarded-Uri", uri, "X-Forwarded-Host", "api.example.com", "X-Forwarded-Proto", "https"}
		return e.do(nil, http.MethodGet, forwardPath, append(h, header...)...)
	}
	resp, body := ask(http.MethodGet, "/telemetry/x?a=1", "Authorization", "Bearer "+tok, HeaderSubject, "admin")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderSubject) != "user-alice" || resp.Header.Get(HeaderThing) != "thing-9" ||
		resp.Header.Get(HeaderScope) != "telemetry" || body != "" {
		t.Fatalf("allowed: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	cases := []struct {
		name        string
		method, uri string
		header      []string
		status      int
	}{
		{"no token", "GET", "/telemetry/x", nil, 401},
		{"insufficient scope", "POST", "/telemetry/x", []string{"Authorization", "Bearer " + tok}, 403},
		{"no route", "GET", "/elsewhere", []string{"Authorization", "Bearer " + tok}, 403},
		{"method no route serves", "DELETE", "/telemetry/x", []string{"Authorization", "Bearer " + tok}, 403},
		{"traversal to admin", "GET", "/telemetry/%2e%2e/admin", []string{"Authorization", "Bearer " + tok}, 403},
		{"encoded slash", "GET", "/telemetry/..%2Fadmin", []string{"Authorization", "Bearer " + tok}, 403},
		{"absolute URI", "GET", "https://evil.example/telemetry/x", []string{"Authorization", "Bearer " + tok}, 400},
	}
	for _, tc := range cases {
		resp, body := ask(tc.method, tc.uri, tc.header...)
		if resp.StatusCode != tc.status || resp.Header.Get(HeaderSubject) != "" {
			t.Errorf("%s: %d %v %s, want %d", tc.name, resp.StatusCode, resp.Header, body, tc.status)
		}
	}
	if resp, _ := e.do(nil, http.MethodGet, forwardPath, "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("without the original request: %d", resp.StatusCode)
	}
	// Throttling answers 429 with Retry-After.
	for i := range 3 {
		resp, _ := ask(http.MethodGet, "/limited/x", "Authorization", "Bearer "+tok)
		if want := map[bool]int{true: 200, false: 429}[i < 2]; resp.StatusCode != want || (want == 429 && resp.Header.Get("Retry-After") == "") {
			t.Fatalf("limited request %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	// A DPoP proof names the URL the client used, which the proxy forwarded.
	h := dpoptest.NewHolder(t)
	bound := e.token("telemetry", func(c *tokens.Claims) { c.Confirmation = &tokens.Confirmation{JKT: h.JKT} })
	proof := proofFor(t, h, e.clk.Now(), http.MethodGet, "https://api.example.com/telemetry/x", bound)
	if resp, body := ask(http.MethodGet, "/telemetry/x", "Authorization", "DPoP "+bound, "DPoP", proof); resp.StatusCode != http.StatusOK {
		t.Fatalf("DPoP through forward-auth: %d %s", resp.StatusCode, body)
	}
}

func TestForwardAuthClientCertificateFromProxy(t *testing.T) {
	trusting := newDeviceEnv(t, apiRoutes, withForwardAuth)
	untrusting := newDeviceEnv(t, apiRoutes, func(o *Options) { o.ForwardAuthPath = forwardPath })
	for _, d := range []*deviceEnv{trusting, untrusting} {
		tok := d.token("telemetry", func(c *tokens.Claims) { c.ThingID, c.Confirmation = d.thing.ID, &tokens.Confirmation{X5TS256: d.thumb} })
		h := []string{"X-Original-Method", "GET", "X-Original-Uri", "/telemetry/x", "Authorization", "Bearer " + tok}
		chainPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.cert.Certificate[0]})
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.cert.Certificate[1]})...)
		chainDER := base64.StdEncoding.EncodeToString(d.cert.Certificate[0]) + "," + base64.StdEncoding.EncodeToString(d.cert.Certificate[1])
		want := http.StatusUnauthorized // the header of an untrusted peer is ignored
		if d == trusting {
			want = http.StatusOK
		}
		for name, cert := range map[string][]string{
			"nginx $ssl_client_escaped_cert": {"X-Ssl-Client-Cert", url.PathEscape(string(chainPEM))},
			"Traefik passTLSClientCert":      {"X-Forwarded-Tls-Client-Cert", url.QueryEscape(chainDER)},
		} {
			resp, body := d.do(nil, http.MethodGet, forwardPath, append(h, cert...)...)
			if resp.StatusCode != want || (want == http.StatusOK && resp.Header.Get(HeaderThing) != d.thing.ID) {
				t.Errorf("%s, trusted %v: %d %s", name, d == trusting, resp.StatusCode, body)
			}
		}
		// Another device's certificate does not match the token.
		other := []string{"X-Ssl-Client-Cert", url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.stolen.Certificate[0]})))}
		if resp, body := d.do(nil, http.MethodGet, forwardPath, append(h, other...)...); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("another certificate, trusted %v: %d %s", d == trusting, resp.StatusCode, body)
		}
	}
}

func FuzzForwardedCerts(f *testing.F) {
	f.Add("-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----")
	f.Add("TUlJQg==,TUlJQg==")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Set("X-Ssl-Client-Cert", v)
		for _, c := range forwardedCerts(h) {
			if c == nil {
				t.Fatal("nil certificate in a chain")
			}
		}
	})
}

// nginx in front of an upstream asks the gateway with auth_request, as
// docs/gateway.md shows.
func TestNginxAuthRequest(t *testing.T) {
	needTool(t, "/usr/sbin/nginx", "nginx")
	e := newEnv(t, forwardRoutes, withForwardAuth)
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
	conf := fmt.Sprintf(nginxConf, dir, addr, e.srv.Listener.Addr(), caFile, strings.TrimPrefix(e.upstream.URL, "http://"))
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/nginx", "-p", dir, "-c", confFile, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, "nginx listens", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	get := func(path string, header ...string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		return e.send(&http.Client{}, req)
	}
	tok := e.token("telemetry")
	resp, body := get("/telemetry/x", "Authorization", "Bearer "+tok, HeaderSubject, "admin", HeaderToken, "forged")
	if resp.StatusCode != http.StatusOK {
		logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("allowed request through nginx: %d %s\n%s", resp.StatusCode, body, logs)
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
		resp, body := get(tc.path, tc.header...)
		if resp.StatusCode != tc.status || (tc.check != nil && !tc.check(resp)) || strings.Contains(body, `"method"`) {
			t.Errorf("%s: %d %v %s", tc.name, resp.StatusCode, resp.Header, body)
		}
	}
	for i := range 3 {
		resp, _ := get("/limited/x", "Authorization", "Bearer "+tok)
		want := map[bool]int{true: 200, false: 429}[i < 2]
		if resp.StatusCode != want || (want == 429 && resp.Header.Get("Retry-After") == "") {
			t.Fatalf("limited request %d through nginx: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	if n, _ := strconv.Atoi(fmt.Sprint(e.counter("thingid_gateway_requests_total", map[string]string{"route": "limited", "code": "429"}))); n != 1 {
		t.Errorf("forward-auth 429s counted: %d", n)
	}
}

// nginxConf is the snippet of docs/gateway.md in a whole configuration: the
// temp directory, nginx's address, the gateway's address, the CA file of the
// gateway's certificate, the upstream.
const nginxConf = `
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

        location = /_thingid_auth {
            internal;
            proxy_pass https://%[3]s/.thingid/forward-auth;
            proxy_ssl_trusted_certificate %[4]s;
            proxy_ssl_verify on;
            proxy_ssl_name example.com;
            proxy_ssl_server_name on;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }

        location / {
            auth_request /_thingid_auth;
            auth_request_set $thingid_subject $upstream_http_x_thingid_subject;
            auth_request_set $thingid_client $upstream_http_x_thingid_client;
            auth_request_set $thingid_thing $upstream_http_x_thingid_thing;
            auth_request_set $thingid_scope $upstream_http_x_thingid_scope;
            auth_request_set $thingid_token $upstream_http_x_thingid_token;
            auth_request_set $thingid_status $upstream_status;
            auth_request_set $thingid_retry $upstream_http_retry_after;
            # Replace whatever the client sent under these names.
            proxy_set_header X-Thingid-Subject $thingid_subject;
            proxy_set_header X-Thingid-Client $thingid_client;
            proxy_set_header X-Thingid-Thing $thingid_thing;
            proxy_set_header X-Thingid-Scope $thingid_scope;
            proxy_set_header X-Thingid-Token $thingid_token;
            # auth_request passes 401 and 403; a 429 arrives as 500.
            error_page 500 = @thingid_error;
            proxy_pass http://%[5]s;
        }

        location @thingid_error {
            if ($thingid_status = 429) {
                add_header Retry-After $thingid_retry always;
                return 429;
            }
            return 500;
        }
    }
}
`
