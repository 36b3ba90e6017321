package sdk

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// DPoP is an http.RoundTripper that proves possession of a key on every
// request (RFC 9449): it adds a fresh proof JWT with the method (htm), the
// URL without query and fragment (htu), and, when the request carries a
// DPoP access token, its hash (ath). When a server asks for a nonce
// (use_dpop_nonce, with a DPoP-Nonce header, §8 and §9) the request is sent
// once more with it, if its body can be sent again; the latest nonce of each
// server is kept for the next proofs.
type DPoP struct {
	key  crypto.Signer
	alg  jwa.SignatureAlgorithm
	jwk  jwk.Key
	jkt  string
	base http.RoundTripper

	mu     sync.Mutex
	nonces map[string]string // by scheme://host
}

// NewDPoP returns a DPoP round tripper signing with key (ECDSA P-256, P-384
// or P-521, Ed25519, or RSA of 2048 bits or more) over base (nil:
// http.DefaultTransport).
func NewDPoP(key crypto.Signer, base http.RoundTripper) (*DPoP, error) {
	alg, err := dpopAlg(key.Public())
	if err != nil {
		return nil, err
	}
	pub, err := jwk.Import(key.Public())
	if err != nil {
		return nil, fmt.Errorf("sdk: DPoP key: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sdk: DPoP key: %w", err)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &DPoP{key: key, alg: alg, jwk: pub, jkt: base64.RawURLEncoding.EncodeToString(tp), base: base, nonces: map[string]string{}}, nil
}

func dpopAlg(pub crypto.PublicKey) (jwa.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		case elliptic.P521():
			return jwa.ES512(), nil
		}
	case ed25519.PublicKey:
		return jwa.EdDSA(), nil
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return jwa.PS256(), nil
		}
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("sdk: a DPoP key must be ECDSA P-256/P-384/P-521, Ed25519 or RSA of at least 2048 bits, not %T", pub)
}

// Thumbprint is the key's RFC 7638 SHA-256 thumbprint, the cnf.jkt of the
// tokens bound to it.
func (d *DPoP) Thumbprint() string { return d.jkt }

// Proof returns a proof for one request (RFC 9449 §4.2); accessToken, when
// not empty, is hashed into ath; nonce, when not empty, is the server's.
func (d *DPoP) Proof(method, target, accessToken, nonce string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("sdk: DPoP htu: %w", err)
	}
	var jti [16]byte
	rand.Read(jti[:])
	claims := map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"htm": method,
		"htu": htu(u),
		"iat": time.Now().Unix(),
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := jws.NewHeaders()
	if err := h.Set(jws.TypeKey, "dpop+jwt"); err != nil {
		return "", err
	}
	if err := h.Set(jws.JWKKey, d.jwk); err != nil {
		return "", err
	}
	proof, err := jws.Sign(payload, jws.WithKey(d.alg, d.key, jws.WithProtectedHeaders(h)))
	if err != nil {
		return "", fmt.Errorf("sdk: signing a DPoP proof: %w", err)
	}
	return string(proof), nil
}

// htu is the request URL without query and fragment (RFC 9449 §4.2).
func htu(u *url.URL) string {
	v := *u
	v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment, v.User = "", false, "", "", nil
	return v.String()
}

// RoundTrip sends req with a proof, and once more with the server's nonce
// when it asks for one.
func (d *DPoP) RoundTrip(req *http.Request) (*http.Response, error) {
	origin := req.URL.Scheme + "://" + req.URL.Host
	var token string
	if scheme, t, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "DPoP") {
		token = t
	}
	for attempt := 0; ; attempt++ {
		r, err := rewind(req, attempt)
		if err != nil {
			return nil, err
		}
		proof, err := d.Proof(req.Method, req.URL.String(), token, d.nonce(origin))
		if err != nil {
			closeBody(req)
			return nil, err
		}
		r.Header.Set("DPoP", proof)
		resp, err := d.base.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		fresh := resp.Header.Get("DPoP-Nonce")
		if fresh != "" {
			d.setNonce(origin, fresh)
		}
		if attempt > 0 || fresh == "" || !canRewind(req) || !asksForNonce(resp) {
			return resp, nil
		}
		discard(resp)
	}
}

func (d *DPoP) nonce(origin string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nonces[origin]
}

func (d *DPoP) setNonce(origin, n string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nonces[origin] = n
}

// maxErrorBody bounds how much of an error answer is read to find its code.
const maxErrorBody = 64 << 10

// asksForNonce tells whether resp is use_dpop_nonce: in WWW-Authenticate at
// a resource (RFC 9449 §9), in the JSON error body at the authorization
// server (§8). It leaves resp's body readable.
func asksForNonce(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`)
	case http.StatusBadRequest:
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return false
		}
		var e struct {
			Error string `json:"error"`
		}
		return json.Unmarshal(body, &e) == nil && e.Error == "use_dpop_nonce"
	}
	return false
}

// discard drains (a little of) and closes a response that will be retried,
// so that its connection can be reused.
func discard(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
}
