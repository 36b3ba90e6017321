package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// RPTs bound to a DPoP key (RFC 9449) or a client certificate (RFC 8705),
// obtained from the real token endpoint and presented at the gateway's
// oauth2 filter, a door that takes access tokens: without their proof or
// certificate they are refused, with them they pass; and an RPT cannot be
// upgraded under another key.

// bindingWorld is a UMA world whose gateway serves /music through the oauth2
// filter to an upstream, with alice's playlist shared with bob.
type bindingWorld struct {
	*claimsWorld
	gateway string // https://host:port of the gateway listener
}

func newBindingWorld(t *testing.T) *bindingWorld {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "playing for "+r.Header.Get("X-Thingid-Subject"))
	}))
	t.Cleanup(upstream.Close)
	routes := func(c *config.Config) {
		dir := filepath.Join(c.Home, "routes")
		c.Gateway.Routes = dir
		file := "routes:\n  - {name: music, match: {pathPrefix: /music}, upstream: {url: \"" + upstream.URL + "\", stripPrefix: true}, filters: [oauth2]}\n"
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "music.yaml"), []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := &bindingWorld{claimsWorld: newClaimsWorldWith(t, routes)}
	re := regexp.MustCompile(`thingid gateway is serving on (https://\S+) `)
	for deadline := time.Now().Add(20 * time.Second); b.gateway == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(b.r.out.String()); m != nil {
			b.gateway = m[1]
		}
	}
	if b.gateway == "" {
		t.Fatalf("the gateway's address was not printed:\n%s", b.r.out)
	}
	alice := b.signin(t, "alice")
	if code, out := b.call(t, alice, "POST", "/api/v1/uma/shares", jsonHdr(""), `{"resourceId":`+jsonQuote(b.playlist)+`,"user":"bob","scopes":["play"]}`); code != 201 {
		t.Fatalf("alice shares: %d %v", code, out)
	}
	return b
}

// play asks the gateway for the playlist through c with auth.
func (b *bindingWorld) play(t *testing.T, c *http.Client, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", b.gateway+"/music/road-trip", nil)
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// gatewayDPoP presents tok with the DPoP scheme and h's proof for the
// gateway's public origin.
func (b *bindingWorld) gatewayDPoP(t *testing.T, h *dpoptest.Holder, tok string) func(*http.Request) {
	return func(q *http.Request) {
		cl := dpoptest.Claims(q.Method, b.r.p.Config.Gateway.PublicURL+q.URL.EscapedPath(), time.Now())
		cl["ath"] = dpoptest.ATH(tok)
		q.Header.Set("Authorization", "DPoP "+tok)
		q.Header.Set("DPoP", h.Proof(t, cl))
	}
}

// rptRequest asks the token endpoint for an RPT for the playlist as
// client c (authenticated with its secret when it has one) through hc,
// with a DPoP proof of h when h is not nil.
func (b *bindingWorld) rptRequest(t *testing.T, hc *http.Client, c clientCreds, h *dpoptest.Holder, params url.Values) (int, map[string]any) {
	t.Helper()
	params.Set("grant_type", uma.GrantType)
	if params.Get("ticket") == "" {
		params.Set("ticket", b.ticket(t, b.music, `{"resource_id":`+jsonQuote(b.playlist)+`,"resource_scopes":["play"]}`))
	}
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if c.secret != "" {
		hdr["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(c.id)+":"+url.QueryEscape(c.secret)))
	} else {
		params.Set("client_id", c.id)
	}
	if h != nil {
		hdr["DPoP"] = h.Proof(t, dpoptest.Claims("POST", b.r.p.Config.HTTP.PublicURL+"/oauth2/token", time.Now()))
	}
	return b.call(t, hc, "POST", "/oauth2/token", hdr, params.Encode())
}

// cnfOf returns the cnf claim of a JWT, unverified (the test reads what it
// was issued).
func cnfOf(t *testing.T, jwt string) map[string]string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf map[string]string `json:"cnf"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Cnf
}

func TestUMADPoPBoundRPT(t *testing.T) {
	b := newBindingWorld(t)
	holder, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	bob := b.userToken(t, b.app.id, b.bob, nil)
	code, out := b.rptRequest(t, nil, b.app, holder, url.Values{"claim_token": {bob}, "claim_token_format": {uma.FormatAccessToken}})
	if code != 200 || out["token_type"] != "DPoP" {
		t.Fatalf("RPT under a DPoP proof: %d %v", code, out)
	}
	rpt, pct := out["access_token"].(string), out["pct"].(string)
	if cnf := cnfOf(t, rpt); cnf["jkt"] != holder.JKT {
		t.Fatalf("cnf %v, want jkt %s", cnf, holder.JKT)
	}
	for name, tc := range map[string]struct {
		auth func(*http.Request)
		want int
	}{
		"as Bearer":            {bearer(rpt), http.StatusUnauthorized},
		"another key's proof":  {b.gatewayDPoP(t, other, rpt), http.StatusUnauthorized},
		"DPoP without a proof": {func(q *http.Request) { q.Header.Set("Authorization", "DPoP "+rpt) }, http.StatusUnauthorized},
		"with its proof":       {b.gatewayDPoP(t, holder, rpt), http.StatusOK},
	} {
		if code, body := b.play(t, b.r.client, tc.auth); code != tc.want {
			t.Errorf("%s: %d %s, want %d", name, code, body, tc.want)
		}
	}

	// Upgrading the RPT: only under its own key.
	for name, h := range map[string]*dpoptest.Holder{"another key": other, "no key": nil} {
		if code, out := b.rptRequest(t, nil, b.app, h, url.Values{"pct": {pct}, "rpt": {rpt}}); code != 400 || out["error"] != "invalid_grant" {
			t.Errorf("upgrade with %s: %d %v", name, code, out)
		}
	}
	code, out = b.rptRequest(t, nil, b.app, holder, url.Values{"pct": {pct}, "rpt": {rpt}})
	if code != 200 || out["upgraded"] != true || cnfOf(t, out["access_token"].(string))["jkt"] != holder.JKT {
		t.Fatalf("upgrade under its key: %d %v", code, out)
	}

	// A DPoP-bound claim token is the party's only under its own key.
	bound := b.userToken(t, b.app.id, b.bob, func(c *tokens.Claims) { c.Confirmation = &tokens.Confirmation{JKT: holder.JKT} })
	for name, h := range map[string]*dpoptest.Holder{"another key": other, "no key": nil} {
		if code, out := b.rptRequest(t, nil, b.app, h, url.Values{"claim_token": {bound}, "claim_token_format": {uma.FormatAccessToken}}); code != 400 || out["error"] != "invalid_grant" {
			t.Errorf("bound claim token with %s: %d %v", name, code, out)
		}
	}
	if code, out := b.rptRequest(t, nil, b.app, holder, url.Values{"claim_token": {bound}, "claim_token_format": {uma.FormatAccessToken}}); code != 200 {
		t.Errorf("bound claim token under its key: %d %v", code, out)
	}
}

func TestUMACertificateBoundRPT(t *testing.T) {
	b := newBindingWorld(t)
	cert, jwks := selfSignedClientCert(t)
	other, _ := selfSignedClientCert(t)
	id, _ := createClient(t, b.r, map[string]any{"client_name": "mtls speaker", "grant_types": []string{uma.GrantType},
		"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": jwks})
	speaker := clientCreds{id: id}
	withCert := b.r.withClientCert(cert)
	code, out := b.rptRequest(t, withCert, speaker, nil, url.Values{"claim_token": {b.userToken(t, id, b.bob, nil)}, "claim_token_format": {uma.FormatAccessToken}})
	if code != 200 || out["token_type"] != "Bearer" {
		t.Fatalf("RPT over mutual TLS: %d %v", code, out)
	}
	rpt := out["access_token"].(string)
	sum := sha256.Sum256(cert.Leaf.Raw)
	if cnf := cnfOf(t, rpt); cnf["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Fatalf("cnf %v, want the certificate's thumbprint", cnf)
	}
	for name, tc := range map[string]struct {
		client *http.Client
		want   int
	}{
		"without a certificate": {b.r.client, http.StatusUnauthorized},
		"with another":          {b.r.withClientCert(other), http.StatusUnauthorized},
		"with its certificate":  {withCert, http.StatusOK},
	} {
		if code, body := b.play(t, tc.client, bearer(rpt)); code != tc.want {
			t.Errorf("%s: %d %s, want %d", name, code, body, tc.want)
		}
	}
	if code, body := b.play(t, withCert, bearer(rpt)); !strings.Contains(body, b.bob.ID) {
		t.Errorf("the upstream did not hear bob: %d %s", code, body)
	}
}
