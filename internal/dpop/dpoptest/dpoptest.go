// Package dpoptest makes DPoP proofs (RFC 9449) for tests: good ones, and
// ones with any header or claim changed, for the checks that must refuse
// them. It is for tests only.
package dpoptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// Holder is a client's DPoP key pair.
type Holder struct {
	Priv crypto.Signer
	Alg  jwa.SignatureAlgorithm
	Pub  jwk.Key // the public key, as proofs carry it
	JKT  string  // its RFC 7638 thumbprint, as cnf.jkt and dpop_jkt name it
}

// NewHolder returns a holder of a fresh P-256 key (ES256).
func NewHolder(t testing.TB) *Holder {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return HolderOf(t, priv, jwa.ES256())
}

// HolderOf returns the holder of priv, which signs with alg.
func HolderOf(t testing.TB, priv crypto.Signer, alg jwa.SignatureAlgorithm) *Holder {
	t.Helper()
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &Holder{Priv: priv, Alg: alg, Pub: pub, JKT: base64.RawURLEncoding.EncodeToString(tp)}
}

// Claims are the claims of a good proof for method and htu issued at iat,
// with a fresh jti.
func Claims(method, htu string, iat time.Time) map[string]any {
	return map[string]any{"jti": rand.Text(), "htm": method, "htu": htu, "iat": iat.Unix()}
}

// ATH is the ath claim binding a proof to the access token at.
func ATH(at string) string {
	sum := sha256.Sum256([]byte(at))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Proof signs claims with typ dpop+jwt and the public jwk in the header; hdr
// are name, value pairs that set (or override) header parameters.
func (h *Holder) Proof(t testing.TB, claims map[string]any, hdr ...any) string {
	t.Helper()
	headers := jws.NewHeaders()
	_ = headers.Set("typ", "dpop+jwt")
	_ = headers.Set("jwk", h.Pub)
	for i := 0; i+1 < len(hdr); i += 2 {
		_ = headers.Set(hdr[i].(string), hdr[i+1]) // a test may set what jwx refuses: it is then absent
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jws.Sign(payload, jws.WithKey(h.Alg, h.Priv, jws.WithProtectedHeaders(headers)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
