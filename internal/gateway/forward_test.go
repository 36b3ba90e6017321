package gateway

import (
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/refusal"
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

// withForwardAuth serves forward-auth to an nginx on loopback.
func withForwardAuth(o *Options) { forwardAuthFor(ProxyNginx)(o) }

// forwardAuthFor serves forward-auth to a proxy of kind k on loopback.
func forwardAuthFor(k ProxyKind) func(*Options) {
	return func(o *Options) {
		o.ForwardAuthPath, o.ForwardAuthProxy = forwardPath, k
		_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
		o.TrustedProxies = []*net.IPNet{loopback}
	}
}

// Traefik's ForwardAuth describes the request in X-Forwarded-* headers.
func TestForwardAuthTraefik(t *testing.T) {
	e := newEnv(t, forwardRoutes, forwardAuthFor(ProxyTraefik))
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

// describe is how a proxy of kind k asks about method uri on api.example.com.
func describe(k ProxyKind, method, uri string) (askMethod, path string, header []string) {
	switch k {
	case ProxyEnvoy:
		return method, forwardPath + uri, []string{"X-Forwarded-Proto", "https"}
	case ProxyNginx:
		return http.MethodGet, forwardPath, []string{"X-Original-Method", method, "X-Original-Uri", uri, "X-Forwarded-Host", "api.example.com", "X-Forwarded-Proto", "https"}
	}
	return http.MethodGet, forwardPath, []string{"X-Forwarded-Method", method, "X-Forwarded-Uri", uri, "X-Forwarded-Host", "api.example.com", "X-Forwarded-Proto", "https"}
}

// ask sends e's forward-auth the question of a proxy of kind k.
func (e *env) ask(k ProxyKind, method, uri string, header ...string) (*http.Response, string) {
	e.t.Helper()
	m, path, h := describe(k, method, uri)
	req, err := http.NewRequest(m, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = "api.example.com" // Envoy's ext_authz asks with the original Host
	h = append(h, header...)
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Add(h[i], h[i+1])
	}
	return e.send(nil, req)
}

// Each kind of proxy describes the request in its own headers, and the
// gateway reads those of the configured kind only.
func TestForwardAuthProxyKinds(t *testing.T) {
	for _, k := range ProxyKinds {
		t.Run(string(k), func(t *testing.T) {
			e := newEnv(t, apiRoutes, forwardAuthFor(k))
			tok := e.token("telemetry")
			if resp, body := e.ask(k, http.MethodGet, "/telemetry/x?a=1", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderSubject) != "user-alice" {
				t.Fatalf("allowed: %d %s", resp.StatusCode, body)
			}
			for name, tc := range map[string]struct {
				method, uri string
				header      []string
				status      int
			}{
				"no token":            {"GET", "/telemetry/x", nil, 401},
				"insufficient scope":  {"POST", "/telemetry/x", []string{"Authorization", "Bearer " + tok}, 403},
				"public":              {"GET", "/public/x", nil, 200},
				"no route":            {"DELETE", "/telemetry/x", []string{"Authorization", "Bearer " + tok}, 403},
				"traversal":           {"GET", "/telemetry/%2e%2e/admin", []string{"Authorization", "Bearer " + tok}, 403},
				"another kind's URI":  {"POST", "/telemetry/x", []string{"X-Original-Uri", "/public/x", "X-Forwarded-Uri", "/public/x"}, 400},
				"another kind's verb": {"POST", "/telemetry/x", []string{"X-Original-Method", "GET", "X-Forwarded-Method", "GET"}, 400},
				"another kind's cert": {"GET", "/telemetry/x", certHeadersExcept(k), 400},
				"another kind's host": {"GET", "/telemetry/x", []string{"X-Forwarded-Host", "elsewhere.example"}, 400},
			} {
				resp, body := e.ask(k, tc.method, tc.uri, tc.header...)
				if resp.StatusCode != tc.status {
					t.Errorf("%s: %d %s, want %d", name, resp.StatusCode, body, tc.status)
				}
				if tc.status == 400 && !strings.Contains(problemOf(t, resp, body).Detail, "X-") {
					t.Errorf("%s: the problem names no header: %s", name, body)
				}
			}
			// Other names carrying the same values disagree with nothing.
			var same []string
			for _, n := range methodNames {
				if n != headerSets[k].method {
					same = append(same, n, "GET")
				}
			}
			for _, n := range uriNames {
				if n != headerSets[k].uri {
					same = append(same, n, "/public/x")
				}
			}
			if k == ProxyEnvoy {
				same = append(same, "X-Forwarded-Host", "api.example.com")
			}
			if resp, body := e.ask(k, "GET", "/public/x", same...); resp.StatusCode != http.StatusOK {
				t.Errorf("the same request under other names too: %d %s", resp.StatusCode, body)
			}
			// A proxy that copies the answer's identity headers onto the
			// request must overwrite a client's own: every one is in the
			// answer, empty for a request without a token.
			resp, body := e.ask(k, "GET", "/public/x", HeaderThing, "spoofed-thing", HeaderSubject, "spoofed-user")
			for _, h := range identityHeaders {
				if v, ok := resp.Header[h]; resp.StatusCode != http.StatusOK || !ok || strings.Join(v, "") != "" {
					t.Errorf("public route: %s is %q (present %v) in the answer %d %s; want present and empty", h, v, ok, resp.StatusCode, body)
				}
			}
		})
	}
}

// certHeadersExcept is a certificate in every header a kind other than k reads.
func certHeadersExcept(k ProxyKind) []string {
	var h []string
	for _, name := range certNames {
		if name != headerSets[k].cert {
			h = append(h, name, "MIIB")
		}
	}
	return h
}

func TestForwardAuthClientCertificateFromProxy(t *testing.T) {
	for _, k := range ProxyKinds {
		t.Run(string(k), func(t *testing.T) {
			d := newDeviceEnv(t, apiRoutes, forwardAuthFor(k))
			tok := d.token("telemetry", func(c *tokens.Claims) { c.ThingID, c.Confirmation = d.thing.ID, &tokens.Confirmation{X5TS256: d.thumb} })
			chainPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.cert.Certificate[0]})
			chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.cert.Certificate[1]})...)
			chainDER := base64.StdEncoding.EncodeToString(d.cert.Certificate[0]) + "," + base64.StdEncoding.EncodeToString(d.cert.Certificate[1])
			stolenPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.stolen.Certificate[0]})
			var encodings map[string]string
			var stolen string
			switch k {
			case ProxyNginx: // $ssl_client_escaped_cert
				encodings = map[string]string{"escaped PEM": url.PathEscape(string(chainPEM))}
				stolen = url.PathEscape(string(stolenPEM))
			case ProxyTraefik, ProxyCaddy: // passTLSClientCert; {http.request.tls.client.certificate_der_base64}
				encodings = map[string]string{"escaped DER": url.QueryEscape(chainDER), "DER": chainDER}
				stolen = base64.StdEncoding.EncodeToString(d.stolen.Certificate[0])
			case ProxyEnvoy: // forward_client_cert_details: SANITIZE_SET
				encodings = map[string]string{
					"Chain": `Hash=ab12;Chain="` + url.PathEscape(string(chainPEM)) + `";Subject="CN=x"`,
					"Cert":  `By=spiffe://gw;Cert="` + url.PathEscape(string(chainPEM)) + `";URI=spiffe://a;URI=spiffe://b;DNS=d`,
				}
				stolen = `Cert="` + url.PathEscape(string(stolenPEM)) + `"`
			}
			name := headerSets[k].cert
			for enc, v := range encodings {
				resp, body := d.ask(k, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok, name, v)
				if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderThing) != d.thing.ID {
					t.Errorf("%s: %d %s", enc, resp.StatusCode, body)
				}
			}
			// Another device's certificate does not match the token.
			if resp, body := d.ask(k, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok, name, stolen); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("another certificate: %d %s", resp.StatusCode, body)
			}
			// Without one, the token is not the holder's.
			if resp, body := d.ask(k, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("no certificate: %d %s", resp.StatusCode, body)
			}
			// A header that does not parse is named, never ignored.
			resp, body := d.ask(k, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok, name, "%zz")
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(problemOf(t, resp, body).Detail, name) {
				t.Errorf("a garbled certificate: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func FuzzParseCertChain(f *testing.F) {
	f.Add("-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----")
	f.Add("TUlJQg==,TUlJQg==")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, v string) {
		chain, err := parseCertChain(v)
		if err == nil && len(chain) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, c := range chain {
			if c == nil {
				t.Fatal("nil certificate in a chain")
			}
		}
	})
}

func FuzzParseXFCC(f *testing.F) {
	f.Add(`By=spiffe://a;Hash=ab;Cert="-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----";URI=x;URI=y`)
	f.Add(`Hash=1,Hash=2`)
	f.Add(`Subject="CN=a\"b";DNS=x`)
	f.Add(`Cert="x`)
	f.Fuzz(func(t *testing.T, v string) {
		if _, err := parseXFCC(v); err == nil && strings.TrimSpace(v) == "" {
			t.Fatal("an empty element accepted")
		}
		chain, err := xfccCerts(v)
		if err == nil && len(chain) == 0 {
			t.Fatalf("%q: no error and no certificate", v)
		}
	})
}

// FuzzReadOriginal: whatever a trusted proxy sends, the answer is the
// original request or an error naming a header, never a panic.
func FuzzReadOriginal(f *testing.F) {
	f.Add("GET", "/telemetry/x?a=1", "api.example.com", "https", "", "/.thingid/forward-auth/x")
	f.Add("DEL ETE", "http://evil/", "a,b", "ftp", "%zz", "/.thingid/forward-auth")
	f.Add("", "//x", "", "HTTPS", "Cert=\"", "/y")
	f.Fuzz(func(t *testing.T, method, uri, host, proto, cert, requestURI string) {
		for _, k := range ProxyKinds {
			set := headerSets[k]
			r := &http.Request{Method: "GET", Host: "api.example.com", RequestURI: requestURI, Header: http.Header{}}
			for name, v := range map[string]string{set.method: method, set.uri: uri, set.host: host, set.proto: proto, set.cert: cert} {
				if name != "" {
					r.Header[name] = []string{v}
				}
			}
			o, err := readOriginal(k, r, forwardPath)
			if err != nil {
				var he *refusal.FieldError
				if !errors.As(err, &he) {
					t.Fatalf("%s: not a header's error: %v", k, err)
				}
				continue
			}
			if !validMethod(o.method) || !strings.HasPrefix(o.uri, "/") || (o.proto != "https" && o.proto != "http") {
				t.Fatalf("%s: accepted %+v", k, o)
			}
		}
	})
}

// Forward-auth believes the headers describing the original request only
// from a trusted proxy; without one it answers nobody.
func TestForwardAuthNeedsTrustedProxy(t *testing.T) {
	untrusting := newEnv(t, apiRoutes, func(o *Options) { withForwardAuth(o); o.TrustedProxies = nil })
	elsewhere := newEnv(t, apiRoutes, func(o *Options) {
		withForwardAuth(o)
		_, n, _ := net.ParseCIDR("192.0.2.0/24")
		o.TrustedProxies = []*net.IPNet{n}
	})
	tok := untrusting.token("telemetry")
	for _, e := range []*env{untrusting, elsewhere} {
		for name, h := range map[string][]string{
			"public route, no token": {"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/public/x"},
			"nginx names":            {"X-Original-Method", "GET", "X-Original-Uri", "/public/x"},
			"with a token":           {"X-Original-Method", "GET", "X-Original-Uri", "/telemetry/x", "Authorization", "Bearer " + tok},
			"nothing":                nil,
		} {
			resp, body := e.do(nil, http.MethodGet, forwardPath, h...)
			p := problemOf(t, resp, body)
			if resp.StatusCode != http.StatusForbidden || p.Error != "untrusted_proxy" || !strings.Contains(p.Detail, "gateway.trustedProxies") ||
				resp.Header.Get(HeaderSubject) != "" {
				t.Errorf("%s: %d %s", name, resp.StatusCode, body)
			}
		}
	}
}

// Two names for one field that disagree are refused, never resolved by a
// preference: one of them came from the client.
func TestForwardAuthConflictingHeaders(t *testing.T) {
	e := newEnv(t, apiRoutes, withForwardAuth)
	tok := e.token("telemetry")
	base := []string{"X-Forwarded-Host", "api.example.com", "X-Forwarded-Proto", "https", "Authorization", "Bearer " + tok}
	for _, tc := range []struct {
		name   string
		header []string
		named  string
	}{
		{"URI", []string{"X-Original-Method", "GET", "X-Original-Uri", "/telemetry/x", "X-Forwarded-Uri", "/public/x"}, "X-Forwarded-Uri: differs"},
		{"method", []string{"X-Original-Method", "POST", "X-Original-Uri", "/telemetry/x", "X-Forwarded-Method", "GET"}, "X-Forwarded-Method: differs"},
		{"twice", []string{"X-Original-Method", "GET", "X-Original-Uri", "/telemetry/x", "X-Original-Uri", "/public/x"}, "X-Original-Uri: sent 2 times"},
		{"missing", []string{"X-Original-Method", "GET"}, "X-Original-Uri: missing"},
	} {
		resp, body := e.do(nil, http.MethodGet, forwardPath, append(tc.header, base...)...)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(HeaderSubject) != "" {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
			continue
		}
		if p := problemOf(t, resp, body); !strings.Contains(p.Detail, tc.named) {
			t.Errorf("%s: the problem does not say %q: %s", tc.name, tc.named, body)
		}
	}
}
