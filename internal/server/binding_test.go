package server

// Sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificate-bound) at
// the resources of the HTTPS listener: obtained from the real token endpoint
// with golang.org/x/oauth2, presented over real TLS with real proofs.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// boundTokens are a DPoP-bound and a certificate-bound access token with
// the SCIM and openid scopes, with what it takes to present them.
type boundTokens struct {
	dpop     string
	holder   *dpoptest.Holder // the key dpop is bound to
	cert     string
	clientTL tls.Certificate // the certificate cert is bound to
}

// createClient registers a client over the admin API and returns its id and secret.
func createClient(t *testing.T, r *running, spec map[string]any) (id, secret string) {
	t.Helper()
	body, _ := json.Marshal(spec)
	req, _ := http.NewRequest("POST", r.base+"/api/v1/admin/clients", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("admin", adminPassword(t, r))
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		t.Fatalf("create client: %d %s", resp.StatusCode, b)
	}
	var v struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.ID, v.Secret
}

// dpopTransport adds a DPoP proof for each token request (RFC 9449 §5).
type dpopTransport struct {
	t      *testing.T
	holder *dpoptest.Holder
	htu    string
	base   http.RoundTripper
}

func (d *dpopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("DPoP", d.holder.Proof(d.t, dpoptest.Claims(req.Method, d.htu, time.Now())))
	return d.base.RoundTrip(req)
}

// selfSignedClientCert is a fresh self-signed certificate and the JWKS
// registering its key (RFC 8705 §2.2).
func selfSignedClientCert(t *testing.T) (tls.Certificate, json.RawMessage) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scim client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.Import(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.AlgorithmKey, "ES256")
	set := jwk.NewSet()
	set.AddKey(pub)
	jwks, _ := json.Marshal(set)
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, jwks
}

// withClientCert is r's client presenting cert on every connection.
func (r *running) withClientCert(cert tls.Certificate) *http.Client {
	tr := r.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &http.Client{Timeout: r.client.Timeout, Transport: tr}
}

// getBoundTokens obtains both tokens from the token endpoint with
// client_credentials: one under a DPoP proof, one over mutual TLS with a
// self_signed_tls_client_auth client.
func getBoundTokens(t *testing.T, r *running) *boundTokens {
	t.Helper()
	scopes := []string{authn.ScopeSCIMWrite, "openid"}
	tokenURL := r.base + "/oauth2/token"
	b := &boundTokens{holder: dpoptest.NewHolder(t)}

	id, secret := createClient(t, r, map[string]any{"client_name": "dpop scim", "grant_types": []string{"client_credentials"}, "scopes": scopes})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: 10 * time.Second,
		Transport: &dpopTransport{t: t, holder: b.holder, htu: r.p.Config.HTTP.PublicURL + "/oauth2/token", base: r.client.Transport}})
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL, Scopes: scopes}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Type() != "DPoP" {
		t.Fatalf("token type %q under a DPoP proof, want DPoP", tok.Type())
	}
	b.dpop = tok.AccessToken

	var jwks json.RawMessage
	b.clientTL, jwks = selfSignedClientCert(t)
	id, _ = createClient(t, r, map[string]any{"client_name": "mtls scim", "grant_types": []string{"client_credentials"}, "scopes": scopes,
		"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": jwks})
	ctx = context.WithValue(context.Background(), oauth2.HTTPClient, r.withClientCert(b.clientTL))
	cc = clientcredentials.Config{ClientID: id, TokenURL: tokenURL, Scopes: scopes, AuthStyle: oauth2.AuthStyleInParams}
	if tok, err = cc.Token(ctx); err != nil {
		t.Fatal(err)
	}
	b.cert = tok.AccessToken
	return b
}

// do sends method path with auth through c (r's client when nil).
func (r *running) do(t *testing.T, c *http.Client, method, path string, auth func(*http.Request)) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = r.client
	}
	var body io.Reader
	if method == "POST" || method == "PUT" || method == "PATCH" {
		body = strings.NewReader("{}")
	}
	req, _ := http.NewRequest(method, r.base+path, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// withDPoP presents tok with the DPoP scheme and a proof of h over the request.
func withDPoP(t *testing.T, r *running, h *dpoptest.Holder, tok string) func(*http.Request) {
	return func(q *http.Request) {
		cl := dpoptest.Claims(q.Method, r.p.Config.HTTP.PublicURL+q.URL.EscapedPath(), time.Now())
		cl["ath"] = dpoptest.ATH(tok)
		q.Header.Set("Authorization", "DPoP "+tok)
		q.Header.Set("DPoP", h.Proof(t, cl))
	}
}

// TestAttackBoundTokensAtSCIM is issue 12 item 2 as reported: a DPoP-bound
// token sent as Bearer listed users, a certificate-bound token worked
// without its certificate. Both are refused; presented properly, both work.
func TestAttackBoundTokensAtSCIM(t *testing.T) {
	r := serve(t)
	b := getBoundTokens(t, r)
	other := dpoptest.NewHolder(t)
	for _, path := range []string{"/scim/v2/Users", "/scim/v2/Devices"} {
		for _, tc := range []struct {
			name   string
			client *http.Client
			auth   func(*http.Request)
			want   int
		}{
			{"DPoP-bound token as Bearer", nil, bearer(b.dpop), 401},
			{"DPoP-bound token as Bearer with its proof", nil, func(q *http.Request) {
				withDPoP(t, r, b.holder, b.dpop)(q)
				q.Header.Set("Authorization", "Bearer "+b.dpop)
			}, 401},
			{"DPoP-bound token with a proof of another key", nil, withDPoP(t, r, other, b.dpop), 401},
			{"DPoP-bound token with the DPoP scheme and no proof", nil, func(q *http.Request) { q.Header.Set("Authorization", "DPoP "+b.dpop) }, 401},
			{"certificate-bound token without a certificate", nil, bearer(b.cert), 401},
			{"certificate-bound token with another certificate", r.withClientCert(mustCert(selfSignedClientCert(t))), bearer(b.cert), 401},
			{"DPoP-bound token with its proof", nil, withDPoP(t, r, b.holder, b.dpop), 200},
			{"certificate-bound token with its certificate", r.withClientCert(b.clientTL), bearer(b.cert), 200},
		} {
			resp, body := r.do(t, tc.client, "GET", path, tc.auth)
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s: %d, want %d: %.300s", path, tc.name, resp.StatusCode, tc.want, body)
			}
		}
	}
}

func mustCert(c tls.Certificate, _ json.RawMessage) tls.Certificate { return c }

// probes are the requests that reach a route pattern: its method, or GET
// and POST for a pattern without one; wildcards filled in, a prefix pattern
// ("/scim/v2/") extended by one segment, and an exact one ("/{$}") as is.
func probes(pattern string) (methods []string, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	if i := strings.IndexByte(path, '/'); i > 0 {
		path = path[i:] // a host pattern: the path is what matters here
	}
	path, exact := strings.CutSuffix(path, "{$}") // "/{$}" is "/" exactly
	for strings.Contains(path, "{") {
		i := strings.IndexByte(path, '{')
		j := strings.IndexByte(path[i:], '}')
		path = path[:i] + "x" + path[i+j+1:]
	}
	if !exact && strings.HasSuffix(path, "/") {
		path += "x"
	}
	if method == "" {
		return []string{"GET", "POST"}, path
	}
	return []string{method}, path
}

// tokensFor issues, for the first administrator through a client of its
// own, an access token bound to holder's DPoP key and one bound to cert,
// with every scope a resource of the HTTPS listener asks for: the walk
// below needs tokens each resource would accept when presented properly.
func tokensFor(t *testing.T, r *running, holder *dpoptest.Holder, cert tls.Certificate) (dpopBound, certBound string) {
	t.Helper()
	ctx := context.Background()
	adminPassword(t, r)
	admin, err := r.p.Identity.GetUserByName(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokens.NewKeys(ctx, r.p.Store, tokens.KeysConfig{MasterKey: r.p.Key, Alg: tokens.ES256, MaxTokenLifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	iss, err := tokens.NewIssuer(keys, r.p.Config.HTTP.PublicURL)
	if err != nil {
		t.Fatal(err)
	}
	app := &store.Client{Name: "walker", Type: store.ClientConfidential, TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"authorization_code"}}
	if err := r.p.Store.CreateClient(ctx, app); err != nil {
		t.Fatal(err)
	}
	issue := func(cnf *tokens.Confirmation) string {
		g := &store.Grant{ClientID: app.ID, UserID: admin.ID, Created: time.Now()}
		if err := r.p.Store.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := iss.AccessToken(tokens.Claims{Subject: admin.ID, ClientID: app.ID, Audience: []string{r.p.Config.HTTP.PublicURL},
			Scope: []string{"openid", "profile", authn.ScopeAdmin, authn.ScopeSCIMWrite}, IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute),
			GrantID: g.ID, Confirmation: cnf})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return issue(&tokens.Confirmation{JKT: holder.JKT}), issue(&tokens.Confirmation{X5TS256: tokens.CertThumbprint(cert.Leaf)})
}

// TestAttackBoundTokensEveryRoute walks every route of the HTTPS listener,
// from the server's own route table, with a DPoP-bound token sent as
// Bearer, with a proof of another key, and a certificate-bound token
// without its certificate. A route that declares it accepts access tokens
// must answer each with 401, and accept the same tokens presented properly
// (so that the declaration is not empty). Any other route must give those
// tokens nothing it does not give a request without credentials: a new
// route that takes tokens without the verifier's evidence, or without
// declaring it, fails here.
func TestAttackBoundTokensEveryRoute(t *testing.T) {
	r := serve(t)
	holder, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	cert, _ := selfSignedClientCert(t)
	dpopBound, certBound := tokensFor(t, r, holder, cert)
	withCert := r.withClientCert(cert)
	type try struct {
		name   string
		client *http.Client
		auth   func(*http.Request)
	}
	attacks := []try{
		{"DPoP-bound token as Bearer", nil, bearer(dpopBound)},
		{"DPoP-bound token with a proof of another key", nil, withDPoP(t, r, other, dpopBound)},
		{"certificate-bound token without its certificate", nil, bearer(certBound)},
	}
	controls := []try{
		{"DPoP-bound token with its proof", nil, withDPoP(t, r, holder, dpopBound)},
		{"certificate-bound token with its certificate", withCert, bearer(certBound)},
	}
	granted := func(code int) bool { return code < 400 }
	rt := r.p.table.Load().Routes()
	if len(rt) < 50 {
		t.Fatalf("the route table lists %d routes; the HTTPS listener serves more", len(rt))
	}
	declared := 0
	for _, route := range rt {
		methods, path := probes(route.Pattern)
		accepted := false
		for _, m := range methods {
			anon, _ := r.do(t, nil, m, path, nil)
			for _, a := range attacks {
				resp, body := r.do(t, a.client, m, path, a.auth)
				switch {
				case route.AccessTokens && resp.StatusCode != http.StatusUnauthorized:
					t.Errorf("%s (%s %s): %s: %d, want 401: %.200s", route.Pattern, m, path, a.name, resp.StatusCode, body)
				case route.AccessTokens && !strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), ", "), `error="`):
					t.Errorf("%s (%s %s): %s: 401 without an error in WWW-Authenticate %q", route.Pattern, m, path, a.name, resp.Header.Values("WWW-Authenticate"))
				case !route.AccessTokens && granted(resp.StatusCode) && resp.StatusCode != anon.StatusCode:
					t.Errorf("%s (%s %s): %s: %d where no credentials get %d: the route takes tokens without their evidence", route.Pattern, m, path, a.name, resp.StatusCode, anon.StatusCode)
				}
			}
			for _, c := range controls {
				resp, body := r.do(t, c.client, m, path, c.auth)
				switch {
				case route.AccessTokens && resp.StatusCode != http.StatusUnauthorized:
					accepted = true
				case route.AccessTokens:
					t.Logf("%s (%s %s): %s: %d %.200s", route.Pattern, m, path, c.name, resp.StatusCode, body)
				case granted(resp.StatusCode) && !granted(anon.StatusCode):
					t.Errorf("%s (%s %s): %s: %d where no credentials get %d: the route accepts access tokens; mount it with routes.AccessTokens", route.Pattern, m, path, c.name, resp.StatusCode, anon.StatusCode)
				}
			}
		}
		if route.AccessTokens {
			declared++
			if !accepted {
				t.Errorf("%s declares it accepts access tokens but refused them presented properly", route.Pattern)
			}
		}
	}
	if declared < 2 {
		t.Errorf("%d routes declare access tokens; SCIM and UserInfo at least do", declared)
	}
}
