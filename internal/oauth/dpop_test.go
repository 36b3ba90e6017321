package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/dpop/dpoptest"
)

// tokenProof is a good proof for the token endpoint.
func (e *env) tokenProof(t testing.TB, h *dpoptest.Holder) string {
	return h.Proof(t, dpoptest.Claims(http.MethodPost, e.srv.URL+PathToken, time.Now()))
}

// userinfoProof is a good proof for GET /oauth2/userinfo with token at.
func (e *env) userinfoProof(t testing.TB, h *dpoptest.Holder, at string) string {
	c := dpoptest.Claims(http.MethodGet, e.srv.URL+pathUserinfo, time.Now())
	c["ath"] = athOf(at)
	return h.Proof(t, c)
}

func athOf(at string) string {
	sum := sha256.Sum256([]byte(at))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// rawJWS builds a compact JWS by hand for what jwx refuses to sign.
func rawJWS(hdr, claims map[string]any, sign func(input string) []byte) string {
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

// dpopTransport adds a fresh proof to every request, as a DPoP client library would.
type dpopTransport struct {
	h    *dpoptest.Holder
	t    testing.TB
	base http.RoundTripper
}

func (d dpopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u := *r.URL
	u.RawQuery, u.Fragment = "", ""
	r = r.Clone(r.Context())
	r.Header.Set("DPoP", d.h.Proof(d.t, dpoptest.Claims(r.Method, u.String(), time.Now())))
	return d.base.RoundTrip(r)
}

func (e *env) dpopCtx(t testing.TB, h *dpoptest.Holder) context.Context {
	c := *e.srv.Client()
	c.Transport = dpopTransport{h: h, t: t, base: e.srv.Client().Transport}
	return context.WithValue(context.Background(), oauth2.HTTPClient, &c)
}

func TestDPoPClientCredentials(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}})
	h := dpoptest.NewHolder(t)
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}}, append(basic(c.ID, secret), "DPoP", e.tokenProof(t, h))...)
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	if resp.StatusCode != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("DPoP token request: %d %s", resp.StatusCode, body)
	}
	cl, err := e.verify(tr.AccessToken)
	if err != nil || cl.Confirmation == nil || cl.Confirmation.JKT != h.JKT {
		t.Fatalf("cnf of %+v (%v), want jkt %s", cl, err, h.JKT)
	}
	// Without a proof: a plain bearer token.
	resp, body = e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}}, basic(c.ID, secret)...)
	_ = json.Unmarshal([]byte(body), &tr)
	if resp.StatusCode != http.StatusOK || tr.TokenType != "Bearer" {
		t.Fatalf("bearer: %d %s", resp.StatusCode, body)
	}
	if m := e.s.Metadata(); len(m.DPoPSigningAlgValuesSupported) == 0 || m.DPoPSigningAlgValuesSupported[0] != "ES256" {
		t.Fatalf("metadata: %v", m.DPoPSigningAlgValuesSupported)
	}
}

func TestDPoPProofAttacks(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}})
	h, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	htu := e.srv.URL + PathToken
	good := func() map[string]any { return dpoptest.Claims(http.MethodPost, htu, time.Now()) }
	with := func(k string, v any) map[string]any { m := good(); m[k] = v; return m }
	pubMap := func(k jwk.Key) map[string]any {
		b, _ := json.Marshal(k)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	privJWK, _ := jwk.Import(h.Priv)
	replayed := h.Proof(t, good())
	hsKey := []byte("a shared secret that is not a key")

	cases := []struct {
		name  string
		proof string
	}{
		{"replay (first use)", replayed}, // accepted below, then refused
		{"replay (same jti)", replayed},
		{"wrong htm", h.Proof(t, dpoptest.Claims(http.MethodGet, htu, time.Now()))},
		{"htu other path", h.Proof(t, with("htu", e.srv.URL+pathUserinfo))},
		{"htu other host", h.Proof(t, with("htu", "https://evil.example"+PathToken))},
		{"htu with query", h.Proof(t, with("htu", htu+"?a=b"))},
		{"iat too old", h.Proof(t, with("iat", time.Now().Add(-2*time.Minute).Unix()))},
		{"iat in the future", h.Proof(t, with("iat", time.Now().Add(time.Minute).Unix()))},
		{"no jti", h.Proof(t, with("jti", ""))},
		{"typ missing", rawJWSBy(t, h, map[string]any{"alg": "ES256", "jwk": pubMap(h.Pub)}, good())},
		{"typ jwt", h.Proof(t, good(), "typ", "JWT")},
		{"alg none", rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": pubMap(h.Pub)}, good(), func(string) []byte { return nil })},
		{"alg HS256", rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": map[string]any{"kty": "oct", "k": base64.RawURLEncoding.EncodeToString(hsKey)}}, good(),
			func(in string) []byte { m := hmac.New(sha256.New, hsKey); m.Write([]byte(in)); return m.Sum(nil) })},
		{"private key in jwk", h.Proof(t, good(), "jwk", privJWK)},
		{"signed by another key", func() string { // other's signature, h's jwk
			hdr := jws.NewHeaders()
			_ = hdr.Set("typ", "dpop+jwt")
			_ = hdr.Set("jwk", h.Pub)
			p, _ := json.Marshal(good())
			b, err := jws.Sign(p, jws.WithKey(jwa.ES256(), other.Priv, jws.WithProtectedHeaders(hdr)))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}()},
		{"not a JWS", "not.a.jws"},
	}
	for i, tc := range cases {
		resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}}, append(basic(c.ID, secret), "DPoP", tc.proof)...)
		if i == 0 {
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_dpop_proof" {
			t.Errorf("%s: %d %s, want 400 invalid_dpop_proof", tc.name, resp.StatusCode, body)
		}
	}
	// Two DPoP headers.
	req, _ := http.NewRequest(http.MethodPost, htu, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ID, secret)
	req.Header.Add("DPoP", h.Proof(t, good()))
	req.Header.Add("DPoP", h.Proof(t, good()))
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("two DPoP headers: %d", resp.StatusCode)
	}
}

// rawJWSBy signs a hand-made header with h's key (ES256, r||s).
func rawJWSBy(t testing.TB, h *dpoptest.Holder, hdr, claims map[string]any) string {
	return rawJWS(hdr, claims, func(in string) []byte {
		sum := sha256.Sum256([]byte(in))
		r, s, err := ecdsa.Sign(rand.Reader, h.Priv.(*ecdsa.PrivateKey), sum[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	})
}

func TestDPoPUserinfoAndPublicRefresh(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t) // public: its refresh tokens are bound (RFC 9449 §5)
	h, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	code, v := e.codeFor(t, c, "openid", "offline_access")
	tok, err := e.oauthConfig(c).Exchange(e.dpopCtx(t, h), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "DPoP" || tok.RefreshToken == "" {
		t.Fatalf("token %+v", tok)
	}
	at := tok.AccessToken
	ui := func(header ...string) (*http.Response, string) {
		return e.do(t, e.srv.Client(), http.MethodGet, pathUserinfo, "", "", header...)
	}
	resp, body := ui("Authorization", "DPoP "+at, "DPoP", e.userinfoProof(t, h, at))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, e.alice.ID) {
		t.Fatalf("userinfo with proof: %d %s", resp.StatusCode, body)
	}
	refusals := []struct {
		name   string
		header []string
		code   string
	}{
		{"bound token as Bearer", []string{"Authorization", "Bearer " + at}, "invalid_token"},
		{"bound token as Bearer with a proof", []string{"Authorization", "Bearer " + at, "DPoP", e.userinfoProof(t, h, at)}, "invalid_token"},
		{"DPoP scheme without proof", []string{"Authorization", "DPoP " + at}, "invalid_dpop_proof"},
		{"proof by another key", []string{"Authorization", "DPoP " + at, "DPoP", e.userinfoProof(t, other, at)}, "invalid_token"},
		{"ath mismatch", []string{"Authorization", "DPoP " + at, "DPoP", e.userinfoProof(t, h, at+"x")}, "invalid_dpop_proof"},
		{"no ath", []string{"Authorization", "DPoP " + at, "DPoP", h.Proof(t, dpoptest.Claims(http.MethodGet, e.srv.URL+pathUserinfo, time.Now()))}, "invalid_dpop_proof"},
		{"proof for the token endpoint", []string{"Authorization", "DPoP " + at, "DPoP", func() string {
			c := dpoptest.Claims(http.MethodGet, e.srv.URL+PathToken, time.Now())
			c["ath"] = athOf(at)
			return h.Proof(t, c)
		}()}, "invalid_dpop_proof"},
	}
	for _, tc := range refusals {
		resp, body := ui(tc.header...)
		wa := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(wa, "DPoP ") || !strings.Contains(wa, `error="`+tc.code+`"`) {
			t.Errorf("%s: %d %q %s", tc.name, resp.StatusCode, wa, body)
		}
	}

	// The refresh token is bound: the right key refreshes (and the new one stays bound).
	var tr tokenResponse
	rt := tok.RefreshToken
	form := url.Values{"grant_type": {GrantRefreshToken}, "client_id": {c.ID}, "refresh_token": {rt}}
	resp, body = e.tokenRequest(t, form, "DPoP", e.tokenProof(t, h))
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("refresh with the key: %d %s", resp.StatusCode, body)
	}
	// Another key's proof: invalid_grant (the token stays the holder's).
	form.Set("refresh_token", tr.RefreshToken)
	resp, body = e.tokenRequest(t, form, "DPoP", e.tokenProof(t, other))
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("refresh with another key: %d %s", resp.StatusCode, body)
	}
	// A new grant; refreshing without any proof: invalid_grant too.
	code, v = e.codeFor(t, c, "openid", "offline_access")
	tok, err = e.oauthConfig(c).Exchange(e.dpopCtx(t, h), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = e.tokenRequest(t, url.Values{"grant_type": {GrantRefreshToken}, "client_id": {c.ID}, "refresh_token": {tok.RefreshToken}})
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("refresh without proof: %d %s", resp.StatusCode, body)
	}
}

func TestDPoPConfidentialRefreshNotBound(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "speaker backend", ThingID: e.speaker.ID,
		GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}, Scopes: []string{"speaker:play", "offline_access"}})
	h := dpoptest.NewHolder(t)
	d := e.startDeviceAuth(t, c.ID, secret)
	e.approve(t, d.UserCode, e.alice, alicePassword)
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantDeviceCode}, "device_code": {d.DeviceCode}}, append(basic(c.ID, secret), "DPoP", e.tokenProof(t, h))...)
	var tr tokenResponse
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.TokenType != "DPoP" || tr.RefreshToken == "" {
		t.Fatalf("device_code with DPoP: %d %s", resp.StatusCode, body)
	}
	// RFC 9449 §5: a confidential client's refresh token is not bound...
	resp, body = e.tokenRequest(t, url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.RefreshToken}}, basic(c.ID, secret)...)
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.TokenType != "Bearer" {
		t.Fatalf("refresh without proof: %d %s", resp.StatusCode, body)
	}
	// ...but the access tokens it yields are, when a proof comes along.
	resp, body = e.tokenRequest(t, url.Values{"grant_type": {GrantRefreshToken}, "refresh_token": {tr.RefreshToken}}, append(basic(c.ID, secret), "DPoP", e.tokenProof(t, h))...)
	if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("refresh with proof: %d %s", resp.StatusCode, body)
	}
	if cl, err := e.verify(tr.AccessToken); err != nil || cl.Confirmation == nil || cl.Confirmation.JKT != h.JKT {
		t.Fatalf("refreshed token claims %+v %v", cl, err)
	}
}

// startDeviceAuth starts the device flow for a confidential client.
func (e *env) startDeviceAuth(t testing.TB, id, secret string) deviceAuthResponse {
	t.Helper()
	resp, body := e.post(t, e.srv.Client(), pathDeviceReq, url.Values{"scope": {"speaker:play offline_access"}}, basic(id, secret)...)
	var d deviceAuthResponse
	if err := json.Unmarshal([]byte(body), &d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("device authorization: %d %s", resp.StatusCode, body)
	}
	return d
}

func TestDPoPNonce(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DPoPNonces = true })
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}})
	h := dpoptest.NewHolder(t)
	ask := func(proof string) (*http.Response, string) {
		return e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}}, append(basic(c.ID, secret), "DPoP", proof)...)
	}
	resp, body := ask(e.tokenProof(t, h))
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "use_dpop_nonce" || nonce == "" {
		t.Fatalf("first request: %d %q %s", resp.StatusCode, nonce, body)
	}
	withNonce := func(n string) string {
		cl := dpoptest.Claims(http.MethodPost, e.srv.URL+PathToken, time.Now())
		cl["nonce"] = n
		return h.Proof(t, cl)
	}
	if resp, body := ask(withNonce(nonce)); resp.StatusCode != http.StatusOK {
		t.Fatalf("retry with the nonce: %d %s", resp.StatusCode, body)
	}
	forged := base64.RawURLEncoding.EncodeToString(make([]byte, 24))
	if resp, body := ask(withNonce(forged)); resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "use_dpop_nonce" {
		t.Fatalf("forged nonce: %d %s", resp.StatusCode, body)
	}
	// A nonce from two periods ago is stale.
	past := &dpop.Verifier{NonceKey: e.s.nonceKey, Now: func() time.Time { return time.Now().Add(-2 * dpopNonceRotation) }}
	if old := past.Nonce(); old == nonce {
		t.Fatal("nonces do not rotate")
	} else if resp, body := ask(withNonce(old)); resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "use_dpop_nonce" {
		t.Fatalf("stale nonce: %d %s", resp.StatusCode, body)
	}
}
