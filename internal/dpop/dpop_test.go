package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/store/sqlite"
)

const testURL = "https://api.example.com/devices/1/telemetry"

// rawJWS builds a compact JWS by hand for what jwx refuses to sign.
func rawJWS(hdr, claims map[string]any, sign func(input string) []byte) string {
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newVerifier is a Verifier on a real SQLite store (the replay cache every
// node shares) with a settable clock.
func newVerifier(t testing.TB) (*Verifier, *clock) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: time.Now().Truncate(time.Second)}
	return &Verifier{Replay: st, Now: clk.Now}, clk
}

func TestVerifyAcceptsEveryAlgorithmFamily(t *testing.T) {
	v, clk := newVerifier(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, h := range []*dpoptest.Holder{dpoptest.NewHolder(t), dpoptest.HolderOf(t, p384, jwa.ES384()), dpoptest.HolderOf(t, rsaKey, jwa.PS256()), dpoptest.HolderOf(t, rsaKey, jwa.RS256()), dpoptest.HolderOf(t, edKey, jwa.EdDSA())} {
		c := dpoptest.Claims(http.MethodGet, testURL, clk.Now())
		c["ath"] = dpoptest.ATH("the-token")
		jkt, err := v.Verify(context.Background(), h.Proof(t, c), Request{Method: http.MethodGet, URL: testURL + "?page=2", AccessToken: "the-token"})
		if err != nil || jkt != h.JKT {
			t.Errorf("%s: jkt %q, err %v; want %q", h.Alg, jkt, err, h.JKT)
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	v, clk := newVerifier(t)
	ctx := context.Background()
	h, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	now := clk.Now()
	good := func() map[string]any { return dpoptest.Claims(http.MethodPost, testURL, now) }
	with := func(k string, val any) map[string]any { m := good(); m[k] = val; return m }
	pubMap := func(k jwk.Key) map[string]any {
		b, _ := json.Marshal(k)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	privJWK, _ := jwk.Import(h.Priv)
	hsKey := []byte("a shared secret that is not a key")
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	replayed := h.Proof(t, good())
	if _, err := v.Verify(ctx, replayed, Request{Method: http.MethodPost, URL: testURL}); err != nil {
		t.Fatalf("first use: %v", err)
	}
	signedBy := func(signer *dpoptest.Holder, jwkOf *dpoptest.Holder) string {
		hdr := jws.NewHeaders()
		_ = hdr.Set("typ", "dpop+jwt")
		_ = hdr.Set("jwk", jwkOf.Pub)
		p, _ := json.Marshal(good())
		b, err := jws.Sign(p, jws.WithKey(jwa.ES256(), signer.Priv, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	withATH := func(at string) map[string]any { m := good(); m["ath"] = dpoptest.ATH(at); return m }

	cases := []struct {
		name  string
		proof string
		token string // the access token the request carries
	}{
		{"replayed (same jti)", replayed, ""},
		{"wrong htm", h.Proof(t, dpoptest.Claims(http.MethodGet, testURL, now)), ""},
		{"htu other path", h.Proof(t, with("htu", "https://api.example.com/devices/2/telemetry")), ""},
		{"htu other host", h.Proof(t, with("htu", "https://evil.example/devices/1/telemetry")), ""},
		{"htu other scheme", h.Proof(t, with("htu", "http://api.example.com/devices/1/telemetry")), ""},
		{"htu with query", h.Proof(t, with("htu", testURL+"?a=b")), ""},
		{"htu with fragment", h.Proof(t, with("htu", testURL+"#f")), ""},
		{"htu relative", h.Proof(t, with("htu", "/devices/1/telemetry")), ""},
		{"iat too old", h.Proof(t, with("iat", now.Add(-MaxAge-time.Second).Unix())), ""},
		{"iat in the future", h.Proof(t, with("iat", now.Add(MaxSkew+time.Second).Unix())), ""},
		{"iat a string", h.Proof(t, with("iat", "now")), ""},
		{"iat huge", h.Proof(t, with("iat", 1e300)), ""},
		{"no jti", h.Proof(t, with("jti", "")), ""},
		{"jti too long", h.Proof(t, with("jti", strings.Repeat("j", 257))), ""},
		{"no htu", h.Proof(t, with("htu", "")), ""},
		{"ath missing", h.Proof(t, good()), "the-token"},
		{"ath of another token", h.Proof(t, withATH("another-token")), "the-token"},
		{"typ missing", rawJWS(map[string]any{"alg": "ES256", "jwk": pubMap(h.Pub)}, good(), func(string) []byte { return nil }), ""},
		{"typ jwt", h.Proof(t, good(), "typ", "JWT"), ""},
		{"alg none", rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": pubMap(h.Pub)}, good(), func(string) []byte { return nil }), ""},
		{"alg HS256", rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": map[string]any{"kty": "oct", "k": base64.RawURLEncoding.EncodeToString(hsKey)}}, good(),
			func(in string) []byte { m := hmac.New(sha256.New, hsKey); m.Write([]byte(in)); return m.Sum(nil) }), ""},
		{"alg for another curve", proofOrEmpty(dpoptest.HolderOf(t, p384, jwa.ES256()), good()), ""},
		{"RSA key under 2048 bits", rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "RS256", "jwk": map[string]any{"kty": "RSA",
			"n": base64.RawURLEncoding.EncodeToString(small.N.Bytes()), "e": "AQAB"}}, good(), func(in string) []byte {
			sum := sha256.Sum256([]byte(in))
			sig, err := rsa.SignPKCS1v15(rand.Reader, small, crypto.SHA256, sum[:])
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}), ""},
		{"private key in jwk", h.Proof(t, good(), "jwk", privJWK), ""},
		{"crit header", h.Proof(t, good(), "crit", []string{"exp"}), ""},
		{"signed by another key", signedBy(other, h), ""},
		{"no jwk", rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "ES256"}, good(), func(string) []byte { return nil }), ""},
		{"not a JWS", "not.a.jws", ""},
		{"two parts", "a.b", ""},
		{"too large", strings.Repeat("a", maxLen+1), ""},
	}
	for _, tc := range cases {
		_, err := v.Verify(ctx, tc.proof, Request{Method: http.MethodPost, URL: testURL, AccessToken: tc.token})
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalidProof) || e.Description == "" {
			t.Errorf("%s: err %v, want invalid_dpop_proof with a description", tc.name, err)
		}
	}
}

// proofOrEmpty signs like Proof but lets jwx refuse (a mismatched curve), in
// which case the proof is hand-made with the header claiming ES256.
func proofOrEmpty(h *dpoptest.Holder, claims map[string]any) string {
	headers := jws.NewHeaders()
	_ = headers.Set("typ", "dpop+jwt")
	_ = headers.Set("jwk", h.Pub)
	payload, _ := json.Marshal(claims)
	if b, err := jws.Sign(payload, jws.WithKey(h.Alg, h.Priv, jws.WithProtectedHeaders(headers))); err == nil {
		return string(b)
	}
	b, _ := json.Marshal(h.Pub)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return rawJWS(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": m}, claims, func(string) []byte { return make([]byte, 64) })
}

func TestHeader(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, testURL, nil)
	if p, err := Header(r); p != "" || err != nil {
		t.Fatalf("no header: %q %v", p, err)
	}
	r.Header.Set("DPoP", "")
	if _, err := Header(r); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("empty header: %v", err)
	}
	r.Header.Set("DPoP", "a")
	r.Header.Add("DPoP", "b")
	if _, err := Header(r); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("two headers: %v", err)
	}
}

func TestNonces(t *testing.T) {
	v, clk := newVerifier(t)
	v.NonceKey = []byte("0123456789abcdef0123456789abcdef")
	v.NonceRotation = time.Minute
	h := dpoptest.NewHolder(t)
	ask := func(nonce string) error {
		c := dpoptest.Claims(http.MethodGet, testURL, clk.Now())
		if nonce != "" {
			c["nonce"] = nonce
		}
		_, err := v.Verify(context.Background(), h.Proof(t, c), Request{Method: http.MethodGet, URL: testURL})
		return err
	}
	if err := ask(""); !errors.Is(err, ErrUseNonce) {
		t.Fatalf("without a nonce: %v", err)
	}
	n := v.Nonce()
	if err := ask(n); err != nil {
		t.Fatalf("with the nonce: %v", err)
	}
	// Another node with the same key accepts it; one with another key does not.
	peer := &Verifier{Replay: v.Replay, NonceKey: v.NonceKey, NonceRotation: time.Minute, Now: clk.Now}
	if peer.Nonce() != n {
		t.Fatal("nodes sharing the key disagree on the nonce")
	}
	stranger := &Verifier{Replay: v.Replay, NonceKey: []byte("another key of thirty-two bytes!"), NonceRotation: time.Minute, Now: clk.Now}
	if stranger.Nonce() == n {
		t.Fatal("the nonce does not depend on the key")
	}
	if err := ask(base64.RawURLEncoding.EncodeToString(make([]byte, 24))); !errors.Is(err, ErrUseNonce) {
		t.Fatalf("forged nonce: %v", err)
	}
	// Good for the period it was made in and the next one, then stale.
	clk.Add(time.Minute)
	if v.Nonce() == n {
		t.Fatal("nonces do not rotate")
	}
	if err := ask(n); err != nil {
		t.Fatalf("nonce of the previous period: %v", err)
	}
	clk.Add(time.Minute)
	if err := ask(n); !errors.Is(err, ErrUseNonce) {
		t.Fatalf("stale nonce: %v", err)
	}
	if (&Verifier{}).Nonce() != "" {
		t.Fatal("a nonce without a key")
	}
}

func TestChallenge(t *testing.T) {
	got := Challenge("invalid_dpop_proof", `bad "htu"`+"\n")
	want := `DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512", error="invalid_dpop_proof", error_description="bad 'htu''"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := Challenge("", ""); got != `DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512"` {
		t.Fatalf("bare challenge %s", got)
	}
}

func TestSameHTU(t *testing.T) {
	for _, tc := range []struct {
		htu, want string
		ok        bool
	}{
		{"https://id.example/oauth2/token", "https://id.example/oauth2/token", true},
		{"HTTPS://ID.example:443/oauth2/token", "https://id.example/oauth2/token", true},
		{"https://id.example/oauth2/token", "https://id.example/oauth2/token?x=1", true},
		{"https://id.example", "https://id.example/", true},
		{"https://[::1]:443/a", "https://[::1]/a", true},
		{"https://id.example/oauth2/token?x=1", "https://id.example/oauth2/token", false},
		{"https://id.example/oauth2/token#f", "https://id.example/oauth2/token", false},
		{"https://id.example:8443/oauth2/token", "https://id.example/oauth2/token", false},
		{"http://id.example/oauth2/token", "https://id.example/oauth2/token", false},
		{"https://user@id.example/oauth2/token", "https://id.example/oauth2/token", false},
		{"/oauth2/token", "https://id.example/oauth2/token", false},
		{"https://id.example/oauth2/Token", "https://id.example/oauth2/token", false},
	} {
		if got := sameHTU(tc.htu, tc.want); got != tc.ok {
			t.Errorf("sameHTU(%q, %q) = %v", tc.htu, tc.want, got)
		}
	}
}

func FuzzDPoPProof(f *testing.F) {
	h := dpoptest.NewHolder(f)
	f.Add(h.Proof(f, dpoptest.Claims(http.MethodPost, "https://id.example/oauth2/token", time.Now())))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		key, cl, err := parse(raw)
		if err == nil && (key == nil || cl == nil) {
			t.Fatal("accepted without key or claims")
		}
		if err != nil && (err.Code != ErrInvalidProof.Code || err.Description == "") {
			t.Fatalf("refusal without code or description: %+v", err)
		}
		_ = sameHTU(raw, "https://id.example/oauth2/token")
	})
}
