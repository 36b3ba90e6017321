package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
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
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/thingid/thingid/internal/store"
)

var b64 = base64.RawURLEncoding

// newSigner returns a private ES256 JWK with kid.
func newSigner(t testing.TB, kid string) jwk.Key {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	_ = k.Set(jwk.AlgorithmKey, jwa.ES256())
	return k
}

func keySetJSON(t testing.TB, k jwk.Key, edit ...func(map[string]any)) json.RawMessage {
	t.Helper()
	b, _ := json.Marshal(k)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, f := range edit {
		f(m)
	}
	out, _ := json.Marshal(map[string]any{"keys": []any{m}})
	return out
}

func publicJWKS(t testing.TB, priv jwk.Key, edit ...func(map[string]any)) json.RawMessage {
	t.Helper()
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	return keySetJSON(t, pub, edit...)
}

func privateJWKS(t testing.TB, priv jwk.Key) json.RawMessage { return keySetJSON(t, priv) }

type assertion struct {
	iss, sub, jti string
	aud           []string
	exp           time.Time
}

func (e *env) goodAssertion(clientID string) assertion {
	return assertion{iss: clientID, sub: clientID, jti: rand.Text(), aud: []string{e.srv.URL + "/oauth2/token"}, exp: time.Now().Add(time.Minute)}
}

func sign(t testing.TB, k jwk.Key, a assertion) string {
	t.Helper()
	b := jwt.NewBuilder().Issuer(a.iss).Subject(a.sub).Audience(a.aud).JwtID(a.jti).IssuedAt(time.Now())
	if !a.exp.IsZero() {
		b = b.Expiration(a.exp)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), k))
	if err != nil {
		t.Fatal(err)
	}
	return string(s)
}

// handmade builds a JWT with any header and an HMAC (or no) signature.
func handmade(header map[string]any, a assertion, hmacKey []byte) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(map[string]any{"iss": a.iss, "sub": a.sub, "aud": a.aud, "jti": a.jti, "exp": a.exp.Unix(), "iat": time.Now().Unix()})
	in := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	if hmacKey == nil {
		return in + "."
	}
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(in))
	return in + "." + b64.EncodeToString(m.Sum(nil))
}

func (e *env) tokenRequest(t testing.TB, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	return e.post(t, e.srv.Client(), "/oauth2/token", form, header...)
}

func basic(id, secret string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))}
}

func TestClientSecretMethods(t *testing.T) {
	e := newEnv(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	basicClient, basicSecret := e.client(t, ClientSpec{Name: "basic", GrantTypes: []string{GrantClientCredentials}})
	postClient, postSecret := e.client(t, ClientSpec{Name: "post", TokenEndpointAuthMethod: methodPost, GrantTypes: []string{GrantClientCredentials}})
	withPost := func(id, secret string) url.Values {
		return url.Values{"grant_type": {GrantClientCredentials}, "client_id": {id}, "client_secret": {secret}}
	}

	if resp, body := e.tokenRequest(t, cc, basic(basicClient.ID, basicSecret)...); resp.StatusCode != http.StatusOK {
		t.Fatalf("basic: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.tokenRequest(t, withPost(postClient.ID, postSecret)); resp.StatusCode != http.StatusOK {
		t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	cases := []struct {
		name   string
		form   url.Values
		header []string
		status int
		code   string
	}{
		{"wrong secret (basic)", cc, basic(basicClient.ID, postSecret), 401, "invalid_client"},
		{"wrong secret (post)", withPost(postClient.ID, basicSecret), nil, 401, "invalid_client"},
		{"unknown client", cc, basic("nobody", basicSecret), 401, "invalid_client"},
		{"registered method only", withPost(basicClient.ID, basicSecret), nil, 401, "invalid_client"},
		{"two methods", withPost(postClient.ID, postSecret), basic(basicClient.ID, basicSecret), 400, "invalid_request"},
		{"no credentials", cc, nil, 401, "invalid_client"},
		{"client_id mismatch", url.Values{"grant_type": {GrantClientCredentials}, "client_id": {postClient.ID}}, basic(basicClient.ID, basicSecret), 400, "invalid_request"},
		{"bearer scheme", cc, []string{"Authorization", "Bearer x"}, 401, "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.tokenRequest(t, tc.form, tc.header...)
			if resp.StatusCode != tc.status || oauthError(t, body) != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("error response without Cache-Control: no-store")
			}
		})
	}
	// A client that sends its secret another way than it registered learns
	// the registered method, and the same answer with a right or a wrong
	// secret: nothing about the secret.
	_, right := e.tokenRequest(t, withPost(basicClient.ID, basicSecret))
	_, wrong := e.tokenRequest(t, withPost(basicClient.ID, "wrong"))
	if !strings.Contains(right, "registered for token_endpoint_auth_method client_secret_basic, but authenticated with client_secret_post") || right != wrong {
		t.Errorf("wrong method: %s / %s", right, wrong)
	}
	_, right = e.tokenRequest(t, cc, basic(postClient.ID, postSecret)...)
	_, wrong = e.tokenRequest(t, cc, basic(postClient.ID, "wrong")...)
	if !strings.Contains(right, "registered for token_endpoint_auth_method client_secret_post") || right != wrong {
		t.Errorf("wrong method (Basic): %s / %s", right, wrong)
	}
	_, unknown := e.tokenRequest(t, withPost("nobody", basicSecret))
	if strings.Contains(unknown, "registered") {
		t.Errorf("unknown client: %s", unknown)
	}

	// RFC 6749 §5.2: WWW-Authenticate when the client tried Basic.
	resp, _ := e.tokenRequest(t, cc, basic(basicClient.ID, "wrong")...)
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("failed Basic authentication without WWW-Authenticate")
	}

	// A disabled client is refused even with the right secret.
	if _, err := e.st.UpdateClient(context.Background(), basicClient.ID, 0, func(c *store.Client) error { c.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if resp, body := e.tokenRequest(t, cc, basic(basicClient.ID, basicSecret)...); resp.StatusCode != 401 || oauthError(t, body) != "invalid_client" {
		t.Fatalf("disabled client: %d %s", resp.StatusCode, body)
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	e := newEnv(t)
	key := newSigner(t, "k1")
	c, secret := e.client(t, ClientSpec{Name: "jwt", TokenEndpointAuthMethod: methodPrivateKeyJWT,
		GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}, JWKS: publicJWKS(t, key)})
	if secret != "" {
		t.Fatal("a private_key_jwt client got a secret")
	}
	form := func(jwt string) url.Values {
		return url.Values{"grant_type": {GrantClientCredentials}, "client_assertion_type": {assertionType}, "client_assertion": {jwt}}
	}
	good := e.goodAssertion(c.ID)
	resp, body := e.tokenRequest(t, form(sign(t, key, good)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid assertion: %d %s", resp.StatusCode, body)
	}
	issuerAud := e.goodAssertion(c.ID)
	issuerAud.aud = []string{e.srv.URL}
	if resp, body := e.tokenRequest(t, form(sign(t, key, issuerAud))); resp.StatusCode != http.StatusOK {
		t.Fatalf("issuer as audience: %d %s", resp.StatusCode, body)
	}

	pubJSON := publicJWKS(t, key)
	mod := func(f func(*assertion)) assertion { a := e.goodAssertion(c.ID); f(&a); return a }
	cases := []struct {
		name string
		jwt  string
	}{
		{"replay", sign(t, key, good)},
		{"wrong audience", sign(t, key, mod(func(a *assertion) { a.aud = []string{"https://other.example.com/token"} }))},
		{"expired", sign(t, key, mod(func(a *assertion) { a.exp = time.Now().Add(-2 * time.Minute) }))},
		{"no exp", sign(t, key, mod(func(a *assertion) { a.exp = time.Time{} }))},
		{"exp too far", sign(t, key, mod(func(a *assertion) { a.exp = time.Now().Add(24 * time.Hour) }))},
		{"sub differs", sign(t, key, mod(func(a *assertion) { a.sub = "someone" }))},
		{"no jti", sign(t, key, mod(func(a *assertion) { a.jti = "" }))},
		{"other key", sign(t, newSigner(t, "k1"), e.goodAssertion(c.ID))},
		{"alg none", handmade(map[string]any{"alg": "none", "typ": "JWT"}, e.goodAssertion(c.ID), nil)},
		{"alg none with kid", handmade(map[string]any{"alg": "none", "kid": "k1"}, e.goodAssertion(c.ID), nil)},
		{"HS256 keyed with the public key", handmade(map[string]any{"alg": "HS256", "kid": "k1"}, e.goodAssertion(c.ID), pubJSON)},
		{"garbage", "a.b.c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.tokenRequest(t, form(tc.jwt))
			if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" {
				t.Fatalf("%d %s, want 401 invalid_client", resp.StatusCode, body)
			}
		})
	}
	// HS256 keyed with each public-key coordinate form a confused verifier might use.
	pub, _ := jwk.PublicKeyOf(key)
	raw, _ := json.Marshal(pub)
	if resp, _ := e.tokenRequest(t, form(handmade(map[string]any{"alg": "HS256"}, e.goodAssertion(c.ID), raw))); resp.StatusCode != 401 {
		t.Fatalf("HS256 with the JWK as key: %d", resp.StatusCode)
	}
	// Wrong assertion type and assertion plus secret.
	f := form(sign(t, key, e.goodAssertion(c.ID)))
	f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
	if resp, body := e.tokenRequest(t, f); resp.StatusCode != 400 || oauthError(t, body) != "invalid_request" {
		t.Fatalf("wrong assertion type: %d %s", resp.StatusCode, body)
	}
	f = form(sign(t, key, e.goodAssertion(c.ID)))
	f.Set("client_secret", "x")
	if resp, body := e.tokenRequest(t, f); resp.StatusCode != 400 || oauthError(t, body) != "invalid_request" {
		t.Fatalf("assertion and secret: %d %s", resp.StatusCode, body)
	}
}
