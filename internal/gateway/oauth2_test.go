package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

const apiRoutes = `
routes:
  - name: telemetry
    match:
      pathPrefix: /telemetry
      methods: [GET, POST]
    upstream:
      url: UPSTREAM/v1
      stripPrefix: true
    filters:
      - oauth2:
          scopes:
            "*": [telemetry]
            POST: [telemetry:write]
  - name: devices
    match:
      pathPattern: /devices/{id}/state/{rest...}
    upstream:
      url: UPSTREAM
      rewrite: /v2/things/{id}/{rest...}
    filters:
      - oauth2:
          upstreamToken: {audience: "https://devices.internal", lifetime: 30s}
  - name: admin
    match: {pathPrefix: /admin}
    upstream: {url: UPSTREAM}
    filters:
      - oauth2: {scopes: {"*": [admin]}}
  - name: public
    match: {pathPrefix: /public}
    upstream: {url: UPSTREAM}
    public: true
`

func TestProxyPassesIdentity(t *testing.T) {
	e := newEnv(t, apiRoutes)
	tok := e.token("telemetry", func(c *tokens.Claims) { c.ThingID = "thing-7" })
	resp, body := e.do(nil, http.MethodGet, "/telemetry/temp/now?window=5m&x=%2F", "Authorization", "Bearer "+tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := upstreamSaw(t, body)
	if got.Path != "/v1/temp/now" || got.Query != "window=5m&x=%2F" || got.Method != http.MethodGet {
		t.Errorf("upstream saw %s %s ? %s", got.Method, got.Path, got.Query)
	}
	want := map[string]string{HeaderSubject: "user-alice", HeaderClient: "client-app", HeaderThing: "thing-7", HeaderScope: "telemetry", "X-Forwarded-For": "127.0.0.1", "Authorization": ""}
	for k, v := range want {
		if got.Header.Get(k) != v {
			t.Errorf("upstream header %s = %q, want %q", k, got.Header.Get(k), v)
		}
	}
	if resp.Header.Get("X-Upstream") != "echo" || resp.ProtoMajor != 2 {
		t.Errorf("answer: proto %s, headers %v", resp.Proto, resp.Header)
	}

	// A pattern route rewrites, and signs a token for its upstream.
	resp, body = e.do(nil, http.MethodGet, "/devices/d-1/state/led/2", "Authorization", "Bearer "+e.token("telemetry"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("devices: %d %s", resp.StatusCode, body)
	}
	got = upstreamSaw(t, body)
	if got.Path != "/v2/things/d-1/led/2" {
		t.Errorf("rewritten path %q", got.Path)
	}
	up := got.Header.Get(HeaderToken)
	v, err := tokens.NewVerifier(e.keys, tokens.VerifierConfig{Issuer: testIssuer, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cl, err := v.Inspect(context.Background(), up, tokens.VerifyOptions{Audience: "https://devices.internal"})
	if err != nil || cl.Subject != "user-alice" || !cl.ExpiresAt.After(e.clk.Now()) || cl.ExpiresAt.Sub(e.clk.Now()) > 30*time.Second {
		t.Fatalf("upstream token %+v: %v", cl, err)
	}
	// That token does not open the gateway: its audience is the upstream's.
	if resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+up); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upstream token at the gateway: %d %s", resp.StatusCode, body)
	}

	// A public route needs no token.
	if resp, body := e.do(nil, http.MethodGet, "/public/index.html"); resp.StatusCode != http.StatusOK || upstreamSaw(t, body).Path != "/public/index.html" {
		t.Fatalf("public: %d %s", resp.StatusCode, body)
	}
}

func TestBadTokens(t *testing.T) {
	e := newEnv(t, apiRoutes)
	other := newEnv(t, apiRoutes) // another platform: its keys are not ours
	good := e.token("telemetry")
	cases := []struct {
		name   string
		header []string
		path   string
		status int
		code   string // the error of the problem and of the challenge
		chal   string // in WWW-Authenticate
	}{
		{"no token", nil, "/telemetry/x", 401, "", `Bearer realm="thingid"`},
		{"Basic credentials", []string{"Authorization", "Basic YWxpY2U6cHc="}, "/telemetry/x", 401, "", `DPoP algs=`},
		{"malformed header", []string{"Authorization", "Bearer"}, "/telemetry/x", 400, "invalid_request", `error="invalid_request"`},
		{"malformed token characters", []string{"Authorization", "Bearer a b"}, "/telemetry/x", 400, "invalid_request", `error="invalid_request"`},
		{"two Authorization headers", []string{"Authorization", "Bearer " + good, "Authorization", "Bearer " + good}, "/telemetry/x", 400, "invalid_request", ""},
		{"token in the query", nil, "/telemetry/x?access_token=" + good, 400, "invalid_request", ""},
		{"not a JWT", []string{"Authorization", "Bearer abc.def.ghi"}, "/telemetry/x", 401, "invalid_token", `error="invalid_token"`},
		{"another audience", []string{"Authorization", "Bearer " + e.token("telemetry", func(c *tokens.Claims) { c.Audience = []string{"https://elsewhere"} })}, "/telemetry/x", 401, "invalid_token", "wrong audience"},
		{"another platform's key", []string{"Authorization", "Bearer " + other.token("telemetry")}, "/telemetry/x", 401, "invalid_token", "unknown signing key"},
		{"tampered payload", []string{"Authorization", "Bearer " + tamper(good)}, "/telemetry/x", 401, "invalid_token", `error="invalid_token"`},
		{"insufficient scope", []string{"Authorization", "Bearer " + good}, "/admin/users", 403, "insufficient_scope", `scope="admin"`},
		{"scope of another method", []string{"Authorization", "Bearer " + good}, "POST /telemetry/x", 403, "insufficient_scope", `scope="telemetry telemetry:write"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, path := http.MethodGet, tc.path
			if m, p, ok := strings.Cut(tc.path, " "); ok {
				method, path = m, p
			}
			resp, body := e.do(nil, method, path, tc.header...)
			p := problemOf(t, resp, body)
			wa := strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
			if resp.StatusCode != tc.status || p.Error != tc.code || !strings.Contains(wa, tc.chal) || strings.Contains(body, "upstream") {
				t.Fatalf("%d %q %s; want %d %q with %q", resp.StatusCode, wa, body, tc.status, tc.code, tc.chal)
			}
		})
	}
	if n := e.counter("thingid_gateway_denials_total", map[string]string{"route": "telemetry", "reason": "invalid_token"}); n < 4 {
		t.Errorf("invalid_token denials counted: %v", n)
	}
}

// tamper flips the subject in a JWT's payload, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	return parts[0] + "." + strings.Replace(parts[1], parts[1][10:14], "AAAA", 1) + "." + parts[2]
}

func TestExpiredAndRevokedTokens(t *testing.T) {
	e := newEnv(t, apiRoutes)
	gid := "grant-revoked"
	tok := e.token("telemetry", func(c *tokens.Claims) { c.GrantID = gid })
	keep := e.token("telemetry")
	for range 2 { // the second answer comes from the cache
		if resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("before revocation: %d %s", resp.StatusCode, body)
		}
	}
	e.revoke(gid)
	resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked grant: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+keep); resp.StatusCode != http.StatusOK {
		t.Fatalf("another grant: %d %s", resp.StatusCode, body)
	}
	e.clk.Add(11 * time.Minute)
	resp, body = e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+keep)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("expired: %d %s", resp.StatusCode, body)
	}
}

// A revocation that races a verification must not leave the token cached.
func TestRevocationRacesTheCache(t *testing.T) {
	c := newTokenCache(1024)
	k := cacheKey("aud", "token")
	now := time.Now()
	cl := &tokens.Claims{GrantID: "g1", ExpiresAt: now.Add(time.Hour)}
	started := time.Now()
	c.revoke("g1") // the event lands while the verification is under way
	c.put(k, newPrincipal(cl), cl.ExpiresAt, "g1", now, started)
	if _, ok := c.get(k, now); ok {
		t.Fatal("an answer about a revoked grant was cached")
	}
	// An answer that took longer than maxLookup is not cached either.
	c.put(cacheKey("aud", "slow"), newPrincipal(&tokens.Claims{GrantID: "g2"}), now.Add(time.Hour), "g2", now, time.Now().Add(-maxLookup-time.Second))
	if _, ok := c.get(cacheKey("aud", "slow"), now); ok {
		t.Fatal("a slow answer was cached")
	}
	c.put(k, newPrincipal(&tokens.Claims{GrantID: "g3"}), now.Add(time.Hour), "g3", now, time.Now())
	if _, ok := c.get(k, now); !ok {
		t.Fatal("a good answer was not cached")
	}
}

func TestSpoofedIdentityHeaders(t *testing.T) {
	e := newEnv(t, apiRoutes)
	spoof := []string{HeaderSubject, "admin", "x-thingid-thing", "thing-evil", "X_Thingid_Scope", "admin", "X-THINGID-CLIENT", "evil", HeaderToken, "forged"}
	resp, body := e.do(nil, http.MethodGet, "/telemetry/x", append(spoof, "Authorization", "Bearer "+e.token("telemetry"))...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := upstreamSaw(t, body)
	for k, vs := range got.Header {
		if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-thingid-") {
			for _, v := range vs {
				if v == "admin" || v == "thing-evil" || v == "evil" || v == "forged" {
					t.Errorf("spoofed %s: %q reached the upstream", k, v)
				}
			}
		}
	}
	if got.Header.Get(HeaderSubject) != "user-alice" || got.Header.Get(HeaderThing) != "" || got.Header.Get(HeaderToken) != "" {
		t.Errorf("identity headers %v", got.Header)
	}
	// Public routes strip them too: the upstream must never trust a client's.
	resp, body = e.do(nil, http.MethodGet, "/public/x", spoof...)
	for k := range upstreamSaw(t, body).Header {
		if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-thingid-") {
			t.Errorf("public route passed %s", k)
		}
	}
}

// raw sends an exact request target, bypassing any client-side cleaning.
func (e *env) raw(method, target string, header ...string) (*http.Response, string) {
	e.t.Helper()
	cfg := e.srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", e.srv.Listener.Addr().String(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, e.srv.Listener.Addr())
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", header[i], header[i+1])
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
	return resp, sb.String()
}

func TestPathTricksAgainstRoutes(t *testing.T) {
	e := newEnv(t, apiRoutes)
	auth := []string{"Authorization", "Bearer " + e.token("telemetry")}
	cases := []struct {
		target   string
		status   int
		upstream string // the path the upstream saw, when proxied
	}{
		{"/telemetry/x", 200, "/v1/x"},
		{"/telemetry/./a//b/", 200, "/v1/a/b/"},
		{"//telemetry///x", 200, "/v1/x"},
		{"/telemetry/%78", 200, "/v1/x"},
		{"/telemetry/a%20b", 200, "/v1/a b"},
		{"/telemetry/../admin/users", 403, ""},             // the admin route, which needs admin
		{"/telemetry/%2e%2e/admin/users", 403, ""},         // encoded dots are dots
		{"/telemetry/%2E%2E/%61dmin", 403, ""},             // and encoded letters letters
		{"/telemetry/.%2e/admin", 403, ""},                 // half encoded
		{"//admin", 403, ""},                               // double slash
		{"/telemetry/..%2fadmin", 400, ""},                 // encoded slash
		{"/telemetry%2F..%2Fadmin", 400, ""},               // encoded slash in the prefix
		{"/telemetry/..%5cadmin", 400, ""},                 // encoded backslash
		{"/telemetry/..\\admin", 400, ""},                  // backslash
		{"/telemetry/%00", 400, ""},                        // NUL
		{"/telemetry/../../admin", 400, ""},                // above the root
		{"/telemetry/%zz", 400, ""},                        // bad escape
		{"/telemetryx", 404, ""},                           // not under the prefix
		{"/Telemetry/x", 404, ""},                          // paths are case-sensitive
		{"https://evil.example/telemetry/x", 200, "/v1/x"}, // absolute form: same path
	}
	for _, tc := range cases {
		resp, body := e.raw(http.MethodGet, tc.target, auth...)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.target, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.status == 200 {
			if got := upstreamSaw(t, body).Path; got != tc.upstream {
				t.Errorf("%s: upstream saw %q, want %q", tc.target, got, tc.upstream)
			}
		} else if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			problemOf(t, resp, body) // else net/http refused the request line itself
		} else {
			t.Logf("%s: refused by net/http", tc.target)
		}
	}
	// The methods of a route: 405 with Allow.
	resp, body := e.raw(http.MethodDelete, "/telemetry/x", auth...)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
		t.Fatalf("DELETE: %d %q %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
}

func TestDPoPBoundTokens(t *testing.T) {
	e := newEnv(t, apiRoutes)
	h, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	tok := e.token("telemetry", func(c *tokens.Claims) { c.Confirmation = &tokens.Confirmation{JKT: h.JKT} })
	target := e.srv.URL + "/telemetry/x"
	now := e.clk.Now()
	replayed := proofFor(t, h, now, http.MethodGet, target, tok)
	resp, body := e.do(nil, http.MethodGet, "/telemetry/x?q=1", "Authorization", "DPoP "+tok, "DPoP", replayed)
	if resp.StatusCode != http.StatusOK || upstreamSaw(t, body).Header.Get("Dpop") != "" {
		t.Fatalf("with its proof: %d %s", resp.StatusCode, body)
	}
	cases := []struct {
		name   string
		header []string
		code   string
	}{
		{"bound token as Bearer", []string{"Authorization", "Bearer " + tok}, "invalid_token"},
		{"bound token as Bearer with a proof", []string{"Authorization", "Bearer " + tok, "DPoP", proofFor(t, h, now, http.MethodGet, target, tok)}, "invalid_token"},
		{"DPoP scheme without proof", []string{"Authorization", "DPoP " + tok}, "invalid_dpop_proof"},
		{"replayed proof", []string{"Authorization", "DPoP " + tok, "DPoP", replayed}, "invalid_dpop_proof"},
		{"proof for another URL", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, h, now, http.MethodGet, e.srv.URL+"/telemetry/y", tok)}, "invalid_dpop_proof"},
		{"proof for another host", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, h, now, http.MethodGet, "https://evil.example/telemetry/x", tok)}, "invalid_dpop_proof"},
		{"proof for another method", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, h, now, http.MethodPost, target, tok)}, "invalid_dpop_proof"},
		{"proof for another token", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, h, now, http.MethodGet, target, "other")}, "invalid_dpop_proof"},
		{"stale proof", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, h, now.Add(-2*time.Minute), http.MethodGet, target, tok)}, "invalid_dpop_proof"},
		{"proof by another key", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, other, now, http.MethodGet, target, tok)}, "invalid_token"},
		{"two proofs", []string{"Authorization", "DPoP " + tok, "DPoP", proofFor(t, h, now, http.MethodGet, target, tok), "DPoP", proofFor(t, h, now, http.MethodGet, target, tok)}, "invalid_dpop_proof"},
	}
	for _, tc := range cases {
		resp, body := e.do(nil, http.MethodGet, "/telemetry/x", tc.header...)
		wa := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || problemOf(t, resp, body).Error != tc.code || !strings.HasPrefix(wa, "DPoP algs=") || !strings.Contains(wa, `error="`+tc.code+`"`) {
			t.Errorf("%s: %d %q %s", tc.name, resp.StatusCode, wa, body)
		}
	}
	// A bearer token with the DPoP scheme and a good proof is fine (RFC 9449 §7.1 allows it).
	bearer := e.token("telemetry")
	if resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "DPoP "+bearer, "DPoP", proofFor(t, h, now, http.MethodGet, target, bearer)); resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer token with DPoP: %d %s", resp.StatusCode, body)
	}
}

func TestDPoPNonce(t *testing.T) {
	e := newEnv(t, apiRoutes, func(o *Options) { o.DPoPNonceKey = []byte("0123456789abcdef0123456789abcdef") })
	h := dpoptest.NewHolder(t)
	tok := e.token("telemetry", func(c *tokens.Claims) { c.Confirmation = &tokens.Confirmation{JKT: h.JKT} })
	target := e.srv.URL + "/telemetry/x"
	resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "DPoP "+tok, "DPoP", proofFor(t, h, e.clk.Now(), http.MethodGet, target, tok))
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != http.StatusUnauthorized || nonce == "" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
		t.Fatalf("without nonce: %d %q %s", resp.StatusCode, nonce, body)
	}
	resp, body = e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "DPoP "+tok, "DPoP", proofFor(t, h, e.clk.Now(), http.MethodGet, target, tok, "nonce", nonce))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with nonce: %d %s", resp.StatusCode, body)
	}
}

// deviceEnv adds a thing with a certificate of the platform's device CA,
// checked by the real certauth.Checker.
type deviceEnv struct {
	*env
	thing  *store.Thing
	cert   tls.Certificate
	thumb  string
	ids    *identity.Service
	stolen tls.Certificate // a self-signed certificate with nothing behind it
}

func newDeviceEnv(t *testing.T, routes string, tweak ...func(*Options)) *deviceEnv {
	var checker atomic.Pointer[certauth.Checker]
	d := &deviceEnv{}
	d.env = newEnv(t, routes, append(tweak, func(o *Options) { o.Certificates = certificates{&checker} })...)
	ctx := context.Background()
	d.ids = identity.New(d.st, d.bus, password.Policy{})
	var err error
	d.thing, err = d.ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "thermostat", Type: store.ThingDevice,
		Manufacturer: "Acme", Model: "Thermo-2", SerialNumber: "SN-42", Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	key, err := secrets.LoadOrCreate(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, dca, err := pki.Open(filepath.Join(t.TempDir(), "pki"), key, pki.Import{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := certauth.New(ctx, certauth.Options{Store: d.st, Identity: d.ids, DeviceCA: dca, Bus: d.bus, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	checker.Store(c)
	dc, err := dca.IssueDevice(d.thing.ID, d.thing.SerialNumber, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := dc.KeyPEM()
	if d.cert, err = tls.X509KeyPair(dc.ChainPEM(), kp); err != nil {
		t.Fatal(err)
	}
	d.thumb = tokens.CertThumbprint(dc.Leaf)
	d.stolen = selfSigned(t)
	return d
}

// certificates defers to a Checker made after the gateway.
type certificates struct {
	c *atomic.Pointer[certauth.Checker]
}

func (c certificates) Verify(ctx context.Context, chain []*x509.Certificate) (*certauth.Identity, error) {
	return c.c.Load().Verify(ctx, chain)
}

func selfSigned(t testing.TB) tls.Certificate {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "SN-42", SerialNumber: "SN-42"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// clientWith is a client of the gateway presenting cert.
func (e *env) clientWith(cert tls.Certificate) *http.Client {
	base := e.srv.Client()
	tr := base.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &http.Client{Transport: tr}
}

func TestCertificateBoundTokens(t *testing.T) {
	d := newDeviceEnv(t, apiRoutes)
	tok := d.token("telemetry", func(c *tokens.Claims) {
		c.Subject, c.ThingID, c.Confirmation = d.thing.ID, d.thing.ID, &tokens.Confirmation{X5TS256: d.thumb}
	})
	auth := []string{"Authorization", "Bearer " + tok}
	resp, body := d.do(d.clientWith(d.cert), http.MethodGet, "/telemetry/x", auth...)
	if resp.StatusCode != http.StatusOK || upstreamSaw(t, body).Header.Get(HeaderThing) != d.thing.ID {
		t.Fatalf("with its certificate: %d %s", resp.StatusCode, body)
	}
	// Without any certificate, with one that does not chain, with another device's.
	other, err := d.ids.CreateThing(context.Background(), "test", &store.Thing{DisplayName: "other", Type: store.ThingDevice,
		Manufacturer: "Acme", Model: "Thermo-2", SerialNumber: "SN-43", Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	refusals := map[string]*http.Client{"no certificate": nil, "self-signed certificate": d.clientWith(d.stolen)}
	if key, err := secrets.LoadOrCreate(t.TempDir(), ""); err == nil {
		if _, dca, err := pki.Open(filepath.Join(t.TempDir(), "pki"), key, pki.Import{}); err == nil {
			if dc, err := dca.IssueDevice(other.ID, other.SerialNumber, time.Hour); err == nil {
				kp, _ := dc.KeyPEM()
				if c, err := tls.X509KeyPair(dc.ChainPEM(), kp); err == nil {
					refusals["certificate of another CA"] = d.clientWith(c)
				}
			}
		}
	}
	if len(refusals) != 3 {
		t.Fatal("could not make the certificate of another CA")
	}
	for name, c := range refusals {
		resp, body := d.do(c, http.MethodGet, "/telemetry/x", auth...)
		if resp.StatusCode != http.StatusUnauthorized || problemOf(t, resp, body).Error != "invalid_token" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// A token bound to a self-signed certificate (self_signed_tls_client_auth,
	// RFC 8705 §2.2) passes with that very certificate only.
	leaf, _ := x509.ParseCertificate(d.stolen.Certificate[0])
	selfTok := d.token("telemetry", func(c *tokens.Claims) { c.Confirmation = &tokens.Confirmation{X5TS256: tokens.CertThumbprint(leaf)} })
	selfAuth := []string{"Authorization", "Bearer " + selfTok}
	if resp, body := d.do(d.clientWith(d.stolen), http.MethodGet, "/telemetry/x", selfAuth...); resp.StatusCode != http.StatusOK {
		t.Errorf("self-signed certificate of the token: %d %s", resp.StatusCode, body)
	}
	if resp, body := d.do(d.clientWith(selfSigned(t)), http.MethodGet, "/telemetry/x", selfAuth...); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another self-signed certificate: %d %s", resp.StatusCode, body)
	}
	// A disabled thing's certificate no longer counts.
	if _, err := d.ids.UpdateThing(context.Background(), "test", d.thing.ID, d.thing.Revision, func(th *store.Thing) error {
		th.Status = store.StatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	resp, body = d.do(d.clientWith(d.cert), http.MethodGet, "/telemetry/x", auth...)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "disabled") {
		t.Fatalf("disabled thing: %d %s", resp.StatusCode, body)
	}
}

func TestIntrospectionFallback(t *testing.T) {
	var calls atomic.Int32
	var e *env
	var goodExp int64 // the opaque token's expiry, fixed when the test starts
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, _ := r.BasicAuth()
		// RFC 6749 §2.3.1: the credentials are form-encoded inside Basic.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if id != "gateway" || secret != "s3cret%" || r.PostFormValue("token_type_hint") != "access_token" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		now := e.clk.Now()
		resp := map[string]any{"active": false}
		switch r.PostFormValue("token") {
		case "opaque-good":
			resp = map[string]any{"active": true, "sub": "svc-1", "client_id": "partner", "scope": "telemetry", "aud": []string{testAudience},
				"exp": goodExp, "gid": "grant-opaque"}
		case "opaque-other-aud":
			resp = map[string]any{"active": true, "sub": "svc-1", "client_id": "partner", "scope": "telemetry", "aud": "https://else", "exp": now.Add(time.Hour).Unix()}
		case "opaque-expired":
			resp = map[string]any{"active": true, "sub": "svc-1", "scope": "telemetry", "aud": testAudience, "exp": now.Add(-time.Second).Unix()}
		case "opaque-crlf":
			resp = map[string]any{"active": true, "sub": "svc\r\nX-Evil: 1", "scope": "telemetry", "aud": testAudience, "exp": now.Add(time.Hour).Unix()}
		case "opaque-broken":
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(resp)
	}))
	defer as.Close()
	e = newEnv(t, apiRoutes, func(o *Options) {
		o.Introspection = &IntrospectionOptions{URL: as.URL, ClientID: "gateway", ClientSecret: "s3cret%", CacheTTL: time.Minute}
	})
	goodExp = e.clk.Now().Add(5 * time.Minute).Unix()
	for range 3 {
		resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer opaque-good")
		if resp.StatusCode != http.StatusOK || upstreamSaw(t, body).Header.Get(HeaderSubject) != "svc-1" {
			t.Fatalf("opaque token: %d %s", resp.StatusCode, body)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("%d introspection calls for one token; want 1 (cached)", calls.Load())
	}
	for tok, want := range map[string]int{"opaque-unknown": 401, "opaque-other-aud": 401, "opaque-expired": 401, "opaque-crlf": 401, "opaque-broken": 503} {
		resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok)
		if resp.StatusCode != want {
			t.Errorf("%s: %d %s, want %d", tok, resp.StatusCode, body, want)
		}
	}
	// A revocation event for its grant drops the cached answer at once.
	e.revoke("grant-opaque")
	before := calls.Load()
	if resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer opaque-good"); resp.StatusCode != http.StatusOK || calls.Load() != before+1 {
		t.Fatalf("after revocation: %d %s, %d calls", resp.StatusCode, body, calls.Load()-before)
	}
	// A cached answer never outlives the token.
	e.clk.Add(6 * time.Minute)
	if resp, body := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer opaque-good"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("past exp: %d %s", resp.StatusCode, body)
	}
	// A platform JWT that is merely bad is refused without asking.
	before = calls.Load()
	tok := e.token("telemetry", func(c *tokens.Claims) { c.Audience = []string{"https://else"} })
	if resp, _ := e.do(nil, http.MethodGet, "/telemetry/x", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusUnauthorized || calls.Load() != before {
		t.Fatalf("bad platform JWT: %d, %d calls", resp.StatusCode, calls.Load()-before)
	}
}
