package tokens

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
)

func TestAccessTokenWireFormat(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	c := accessClaims(clk.Now())
	c.Confirmation = &Confirmation{X5TS256: "x5t"}
	parts := strings.Split(e.accessToken(t, c), ".")
	var h map[string]any
	decodeSegment(t, parts[0], &h)
	// RFC 9068 §2.1: typ at+jwt; our header is alg, kid, typ and nothing else.
	if len(h) != 3 || h["typ"] != "at+jwt" || h["alg"] != "ES256" || h["kid"] != e.signingKID() {
		t.Fatalf("header %v", h)
	}
	var p map[string]any
	decodeSegment(t, parts[1], &p)
	want := map[string]any{
		"iss": testIssuer, "sub": "user-1", "aud": testAudience, "client_id": "client-1",
		"scope": "openid playlist:read", "gid": "grant-1", "thing": "thing-1",
		"iat": float64(clk.Now().Unix()), "exp": float64(c.ExpiresAt.Unix()), "auth_time": float64(c.AuthTime.Unix()),
		"cnf": map[string]any{"x5t#S256": "x5t"},
	}
	for name, v := range want {
		if got := p[name]; !equalJSON(got, v) {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if jti, _ := p["jti"].(string); len(jti) < 22 {
		t.Errorf("jti %q", jti)
	}
	if len(p) != len(want)+1 {
		t.Errorf("unexpected claims in %v", p)
	}
}

func equalJSON(a, b any) bool {
	am, ok1 := a.(map[string]any)
	bm, ok2 := b.(map[string]any)
	if ok1 && ok2 {
		if len(am) != len(bm) {
			return false
		}
		for k, v := range am {
			if !equalJSON(v, bm[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestIssueRefusesBadClaims(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	now := clk.Now()
	access := map[string]func(c *Claims){
		"no subject":        func(c *Claims) { c.Subject = "" },
		"no client":         func(c *Claims) { c.ClientID = "" },
		"no grant":          func(c *Claims) { c.GrantID = "" },
		"no audience":       func(c *Claims) { c.Audience = nil },
		"empty audience":    func(c *Claims) { c.Audience = []string{""} },
		"no expiry":         func(c *Claims) { c.ExpiresAt = time.Time{} },
		"expiry before iat": func(c *Claims) { c.ExpiresAt = now.Add(-time.Second) },
		"too long":          func(c *Claims) { c.ExpiresAt = now.Add(2 * time.Hour) },
		"scope with space":  func(c *Claims) { c.Scope = []string{"a b"} },
		"empty scope":       func(c *Claims) { c.Scope = []string{""} },
		"empty cnf":         func(c *Claims) { c.Confirmation = &Confirmation{} },
	}
	for name, mutate := range access {
		c := accessClaims(now)
		mutate(&c)
		if _, err := e.is.AccessToken(c); err == nil {
			t.Errorf("access token with %s issued", name)
		}
	}
	id := map[string]func(c *IDClaims){
		"no subject":               func(c *IDClaims) { c.Subject = "" },
		"two audiences and no azp": func(c *IDClaims) { c.Audience = []string{"a", "b"} },
		"extra overriding iss":     func(c *IDClaims) { c.Extra = map[string]any{"iss": "https://evil.example"} },
		"extra overriding nonce":   func(c *IDClaims) { c.Extra = map[string]any{"nonce": "x"} },
	}
	for name, mutate := range id {
		c := IDClaims{Subject: "user-1", Audience: []string{"client-1"}, ExpiresAt: now.Add(time.Minute)}
		mutate(&c)
		if _, err := e.is.IDToken(c); err == nil {
			t.Errorf("ID token with %s issued", name)
		}
	}
	if _, err := NewIssuer(e.keys, "https://id.example.com/?tenant=1"); err == nil {
		t.Error("issuer with a query accepted")
	}
}

// TestSignaturesVerifyWithStdlib checks the signing path against the standard
// library's verifiers, independently of jwx, for every algorithm; ES256 runs
// long enough to produce values of R or S with leading zero bytes, which must
// be left-padded to 32 bytes (RFC 7518 §3.4).
func TestSignaturesVerifyWithStdlib(t *testing.T) {
	for _, tc := range []struct {
		alg string
		n   int
	}{{ES256, 1500}, {EdDSA, 50}, {RS256, 20}} {
		t.Run(tc.alg, func(t *testing.T) {
			clk := newClock()
			e := newEnv(t, &memStore{}, masterKey(), events.New(), clk, tc.alg)
			pub := e.keys.current().signing.priv.Public()
			padded := 0
			for i := range tc.n {
				tok := e.accessToken(t, accessClaims(clk.Now()))
				dot := strings.LastIndexByte(tok, '.')
				input := []byte(tok[:dot])
				sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
				if err != nil {
					t.Fatal(err)
				}
				digest := sha256.Sum256(input)
				ok := false
				switch k := pub.(type) {
				case *ecdsa.PublicKey:
					if len(sig) != 64 {
						t.Fatalf("ES256 signature of %d bytes", len(sig))
					}
					if sig[0] == 0 || sig[32] == 0 {
						padded++
					}
					r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
					ok = ecdsa.Verify(k, digest[:], r, s)
				case ed25519.PublicKey:
					ok = ed25519.Verify(k, input, sig)
				case *rsa.PublicKey:
					ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
				default:
					t.Fatalf("public key %T", pub)
				}
				if !ok {
					t.Fatalf("token %d: signature does not verify: %s", i, tok)
				}
				if i < 5 {
					if _, err := e.v.Verify(context.Background(), bearerOf(tok), VerifyOptions{Audience: testAudience}); err != nil {
						t.Fatalf("jwx verifier: %v", err)
					}
				}
			}
			if tc.alg == ES256 && padded == 0 {
				t.Fatalf("no signature in %d had a short R or S: the padding went untested", tc.n)
			}
		})
	}
}

func TestFixedSizeECDSARefusesMalformed(t *testing.T) {
	for name, der := range map[string][]byte{
		"empty":          nil,
		"not a sequence": {0x02, 0x01, 0x01},
		"one integer":    {0x30, 0x03, 0x02, 0x01, 0x01},
		"trailing data":  {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00},
		"zero r":         {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01},
		"negative s":     {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0xff},
		"r too long":     append([]byte{0x30, 0x26, 0x02, 0x21, 0x01}, append(bytes.Repeat([]byte{1}, 32), 0x02, 0x01, 0x01)...),
	} {
		if out, err := fixedSizeECDSA(der, 32); err == nil {
			t.Errorf("%s: accepted as %x", name, out)
		}
	}
}

// FuzzFixedSizeECDSA: any input either is refused or becomes exactly 64
// bytes that encode back to the same R and S.
func FuzzFixedSizeECDSA(f *testing.F) {
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02})
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		out, err := fixedSizeECDSA(der, 32)
		if err != nil {
			return
		}
		if len(out) != 64 {
			t.Fatalf("%d bytes", len(out))
		}
		r, s := new(big.Int).SetBytes(out[:32]), new(big.Int).SetBytes(out[32:])
		if r.Sign() <= 0 || s.Sign() <= 0 {
			t.Fatalf("zero R or S accepted from %x", der)
		}
	})
}
