package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// checkProof verifies a proof as RFC 9449 §4.3 says and returns its claims.
func checkProof(t *testing.T, proof string, want crypto.PublicKey) map[string]any {
	t.Helper()
	msg, err := jws.Parse([]byte(proof))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if typ, _ := h.Type(); typ != "dpop+jwt" {
		t.Errorf("typ %q", typ)
	}
	key, ok := h.JWK()
	if !ok {
		t.Fatal("no jwk header")
	}
	if priv, _ := jwk.IsPrivateKey(key); priv {
		t.Fatal("the jwk header holds the private key")
	}
	var pub any
	if err := jwk.Export(key, &pub); err != nil {
		t.Fatal(err)
	}
	if !want.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Fatal("the jwk is not the DPoP key")
	}
	alg, _ := h.Algorithm()
	payload, err := jws.Verify([]byte(proof), jws.WithKey(alg, key))
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	return claims
}

func TestDPoPProofs(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]crypto.Signer{"ES256": ec, "EdDSA": ed, "PS256": rs} {
		d, err := NewDPoP(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		proof, err := d.Proof("POST", "https://id.example.com/oauth2/token?x=1#f", "tok", "n-1")
		if err != nil {
			t.Fatal(err)
		}
		c := checkProof(t, proof, key.Public())
		sum := sha256.Sum256([]byte("tok"))
		if c["htm"] != "POST" || c["htu"] != "https://id.example.com/oauth2/token" || c["nonce"] != "n-1" ||
			c["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) || c["jti"] == "" || c["iat"] == nil {
			t.Errorf("%s: claims %v", name, c)
		}
		again, _ := d.Proof("POST", "https://id.example.com/oauth2/token", "", "")
		if c2 := checkProof(t, again, key.Public()); c2["jti"] == c["jti"] || c2["ath"] != nil || c2["nonce"] != nil {
			t.Errorf("%s: second proof %v", name, c2)
		}
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for _, k := range []crypto.Signer{small, p224} {
		if _, err := NewDPoP(k, nil); err == nil {
			t.Errorf("%T accepted as a DPoP key", k.Public())
		}
	}
}

// A server that wants nonces: the token endpoint answers 400
// use_dpop_nonce, the resource 401 with the error in WWW-Authenticate; each
// request is sent once more with the nonce, its body intact.
func TestDPoPNonceRetry(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := checkProof(t, r.Header.Get("DPoP"), key.Public())
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+string(body))
		mu.Unlock()
		w.Header().Set("DPoP-Nonce", "server-nonce")
		switch {
		case c["nonce"] == "server-nonce":
			w.Write([]byte("ok"))
		case r.URL.Path == "/token":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"use_dpop_nonce"}`))
		default:
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	d, err := NewDPoP(key, srv.Client().Transport)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: d}
	resp, err := c.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || len(seen) != 2 || seen[1] != "/token grant_type=x" {
		t.Fatalf("token: %s %q", b, seen)
	}
	// The nonce is remembered: the next request needs no retry.
	resp, err = c.Get(srv.URL + "/resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(seen) != 3 {
		t.Fatalf("resource: %d %q", resp.StatusCode, seen)
	}
	// A body that cannot be sent again is not retried: the answer comes back.
	seen = nil
	d2, _ := NewDPoP(key, srv.Client().Transport)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/resource", io.NopCloser(strings.NewReader("once")))
	resp, err = (&http.Client{Transport: d2}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(seen) != 1 {
		t.Fatalf("unrewindable body: %d %q", resp.StatusCode, seen)
	}
}

// FuzzParseCertsOnly: whatever the bytes, certificates or an error.
func FuzzParseCertsOnly(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x06, 0x01, 0x00})
	f.Add([]byte{})
	f.Add([]byte("0\x80"))
	f.Add([]byte{0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x02, 0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		certs, err := ParseCertsOnly(der)
		if err == nil && len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
	})
}

// ParseCertsOnly reads what another EST implementation sends: openssl's
// certs-only PKCS#7.
func TestParseCertsOnlyFromOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl is required in CI")
		}
		t.Skip("openssl not installed; skipping")
	}
	dir := t.TempDir()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain := append(selfSigned(t, k1, "one"), selfSigned(t, k2, "two")...)
	os.WriteFile(filepath.Join(dir, "chain.pem"), chain, 0o644)
	out, err := exec.Command(openssl, "crl2pkcs7", "-nocrl", "-certfile", filepath.Join(dir, "chain.pem"), "-outform", "DER").Output()
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertsOnly(out)
	if err != nil || len(certs) != 2 || ThingID(certs[0]) != "one" || ThingID(certs[1]) != "two" {
		t.Fatalf("%d certificates, %v", len(certs), err)
	}
}
