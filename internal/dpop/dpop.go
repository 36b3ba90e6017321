// Package dpop verifies DPoP proofs (RFC 9449 §4.3) for every part of thingid
// that accepts them: the authorization server's token and UserInfo endpoints
// and the resource servers (gateway). It checks a proof and returns its key's
// thumbprint; binding that thumbprint to a token is the job of tokens.Presentation.
// It knows nothing of OAuth flows, HTTP responses beyond the challenge, or the store.
package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/thingid/thingid/internal/store"
)

const (
	// MaxAge is how old a proof's iat may be, MaxSkew how far ahead of our
	// clock (RFC 9449 §11.1: a short window limits pre-generated proofs; the
	// skew tolerates device clocks a little fast). A proof's jti is remembered
	// until iat+MaxAge, after which the proof is refused as stale anyway.
	MaxAge  = 60 * time.Second
	MaxSkew = 10 * time.Second
	// DefaultNonceRotation is the period of server nonces (RFC 9449 §8) when
	// Verifier.NonceRotation is zero.
	DefaultNonceRotation = 5 * time.Minute
	// maxLen bounds a proof: a JWS with an RSA-4096 jwk fits easily.
	maxLen = 8 << 10
)

// algorithms are the proof algorithms accepted: asymmetric only (RFC 9449
// §4.3 item 5), never none or HS*.
var algorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}

// Algorithms lists the accepted proof algorithms, for metadata
// (dpop_signing_alg_values_supported) and the algs of challenges.
func Algorithms() []string { return slices.Clone(algorithms) }

// privateMembers are the JWK members of private or symmetric keys (RFC 7518
// §6.2.2, §6.3.2, §6.4; RFC 8037 §2): a proof's jwk must not carry them (RFC
// 9449 §4.3 item 6).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Error is a refused proof: Code is invalid_dpop_proof or use_dpop_nonce
// (RFC 9449 §12.2), Description says why and is safe to send back.
type Error struct {
	Code        string
	Description string
}

// Refusals; compare with errors.Is, which matches the code.
var (
	ErrInvalidProof = &Error{Code: "invalid_dpop_proof"}
	ErrUseNonce     = &Error{Code: "use_dpop_nonce"}
)

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// Is matches errors of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// WithDescription returns a copy of e carrying the description.
func (e *Error) WithDescription(format string, args ...any) *Error {
	return &Error{Code: e.Code, Description: fmt.Sprintf(format, args...)}
}

// Header returns the request's single DPoP header, "" when there is none; a
// refusal is an *Error.
func Header(r *http.Request) (string, error) {
	vs := r.Header.Values("DPoP")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		// RFC 9449 §4.3 item 1: exactly one DPoP header.
		return "", ErrInvalidProof.WithDescription("send exactly one DPoP header")
	case vs[0] == "":
		return "", ErrInvalidProof.WithDescription("the DPoP header is empty")
	}
	return vs[0], nil
}

// Challenge is the WWW-Authenticate value of RFC 9449 §7.1 with the
// algorithms accepted; code and desc may be empty (a request without a token).
func Challenge(code, desc string) string {
	v := `DPoP algs="` + strings.Join(algorithms, " ") + `"`
	if code != "" {
		v += `, error="` + code + `"`
	}
	if desc != "" {
		v += `, error_description="` + quotable(desc) + `"`
	}
	return v
}

// quotable keeps a description inside an RFC 6750 §3 quoted string:
// printable ASCII without '"' and '\'.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}

// Replay remembers proof identifiers across nodes (store.Replay).
type Replay interface {
	// UseOnce records key until expiresAt; store.ErrUsed if it is recorded already.
	UseOnce(ctx context.Context, key string, expiresAt time.Time) error
}

// Verifier checks proofs. Replay is required; the zero value of the other
// fields runs without nonces.
type Verifier struct {
	Replay Replay
	// NonceKey, when set, makes every proof carry a server nonce (RFC 9449 §8)
	// made with it; nodes sharing the key accept each other's nonces.
	NonceKey []byte
	// NonceRotation is how often the nonce changes; default DefaultNonceRotation.
	NonceRotation time.Duration
	// Now is the clock; nil for time.Now.
	Now func() time.Time
}

// Request is what a proof must match besides its own rules.
type Request struct {
	Method string
	// URL is the request's URL as the resource or endpoint knows itself (the
	// Host header alone is the client's to choose and proves nothing); query
	// and fragment are ignored.
	URL string
	// AccessToken, when not "", must hash to the proof's ath (RFC 9449 §4.3
	// item 11): resources pass the token the request came with.
	AccessToken string
}

// claims is the payload of a proof (RFC 9449 §4.2).
type claims struct {
	JTI   string      `json:"jti"`
	HTM   string      `json:"htm"`
	HTU   string      `json:"htu"`
	IAT   json.Number `json:"iat"`
	ATH   string      `json:"ath"`
	Nonce string      `json:"nonce"`
}

// Verify checks proof by RFC 9449 §4.3 against want and returns the RFC 7638
// thumbprint (jkt) of its key. A refusal is an *Error (ErrInvalidProof or
// ErrUseNonce); any other error is a failure of the replay store.
func (v *Verifier) Verify(ctx context.Context, proof string, want Request) (string, error) {
	key, cl, err := parse(proof)
	if err != nil {
		return "", err
	}
	if cl.HTM != want.Method {
		return "", ErrInvalidProof.WithDescription("htm does not match the request method (RFC 9449 §4.3 item 8)")
	}
	if !sameHTU(cl.HTU, want.URL) {
		return "", ErrInvalidProof.WithDescription("htu does not match the request URI (RFC 9449 §4.3 item 9)")
	}
	iat, ferr := cl.IAT.Float64()
	if ferr != nil || math.IsNaN(iat) || math.IsInf(iat, 0) || iat < 0 || iat > 1<<40 {
		return "", ErrInvalidProof.WithDescription("iat is missing or not a number")
	}
	now := v.now()
	issued := time.Unix(int64(iat), 0)
	if issued.Before(now.Add(-MaxAge)) || issued.After(now.Add(MaxSkew)) {
		return "", ErrInvalidProof.WithDescription("iat is outside the accepted window (%s old, %s ahead)", MaxAge, MaxSkew)
	}
	if want.AccessToken != "" {
		sum := sha256.Sum256([]byte(want.AccessToken))
		if !hmac.Equal([]byte(cl.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) {
			return "", ErrInvalidProof.WithDescription("ath does not match the access token (RFC 9449 §4.3 item 11)")
		}
	}
	if v.NonceKey != nil && !v.validNonce(cl.Nonce, now) {
		// RFC 9449 §8: the answer carries a fresh nonce (the caller adds the header).
		return "", ErrUseNonce.WithDescription("send the nonce of the DPoP-Nonce header in the proof")
	}
	tp, terr := key.Thumbprint(crypto.SHA256)
	if terr != nil {
		return "", ErrInvalidProof.WithDescription("the jwk has no thumbprint")
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	if v.Replay == nil {
		return "", errors.New("dpop: Verifier.Replay is required")
	}
	// RFC 9449 §11.1: a proof is used once. The jti is namespaced by the key
	// so one client's identifiers cannot collide with another's.
	switch err := v.Replay.UseOnce(ctx, "dpop:"+jkt+":"+cl.JTI, issued.Add(MaxAge)); {
	case errors.Is(err, store.ErrUsed):
		return "", ErrInvalidProof.WithDescription("the proof was used before (jti)")
	case err != nil:
		return "", fmt.Errorf("dpop: replay check: %w", err)
	}
	return jkt, nil
}

func (v *Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// parse does the checks of RFC 9449 §4.3 that need nothing but the proof:
// well-formed JWS, typ, alg, public jwk, signature, required claims.
func parse(raw string) (jwk.Key, *claims, *Error) {
	bad := func(d string) (jwk.Key, *claims, *Error) { return nil, nil, ErrInvalidProof.WithDescription("%s", d) }
	if len(raw) > maxLen {
		return bad("the proof is too large")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return bad("the proof is not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return bad("the proof header is not base64url")
	}
	var hdr struct {
		Typ  string          `json:"typ"`
		Alg  string          `json:"alg"`
		JWK  json.RawMessage `json:"jwk"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return bad("the proof header is not a JSON object")
	}
	// RFC 9449 §4.3 item 4; media types compare case-insensitively (RFC 7515 §4.1.9).
	if !strings.EqualFold(hdr.Typ, "dpop+jwt") {
		return bad("typ must be dpop+jwt")
	}
	if !slices.Contains(algorithms, hdr.Alg) {
		return bad("alg must be an asymmetric signature algorithm")
	}
	if hdr.Crit != nil {
		return bad("no crit header parameter is understood here")
	}
	var members map[string]json.RawMessage
	if len(hdr.JWK) == 0 || json.Unmarshal(hdr.JWK, &members) != nil {
		return bad("the jwk header is missing or not an object")
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return bad("the jwk must be a public key")
		}
	}
	key, err := jwk.ParseKey(hdr.JWK)
	if err != nil {
		return bad("the jwk is not a valid key")
	}
	alg, ok := jwa.LookupSignatureAlgorithm(hdr.Alg)
	if !ok || alg.IsSymmetric() || !algFitsKey(hdr.Alg, key) {
		return bad("alg does not fit the jwk")
	}
	payload, err := jws.Verify([]byte(raw), jws.WithKey(alg, key))
	if err != nil {
		return bad("the signature does not verify with the jwk")
	}
	var cl claims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&cl); err != nil {
		return bad("the proof claims are not a JSON object")
	}
	if cl.JTI == "" || len(cl.JTI) > 256 || cl.HTM == "" || cl.HTU == "" || cl.IAT == "" {
		return bad("jti, htm, htu and iat are required (jti at most 256 characters)")
	}
	return key, &cl, nil
}

// algFitsKey: the key type (and curve or size) the algorithm needs.
func algFitsKey(alg string, key jwk.Key) bool {
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return false
	}
	switch k := raw.(type) {
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		return want != nil && k.Curve == want
	case *rsa.PublicKey:
		// RFC 7518 §3.3: 2048 bits at least.
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// sameHTU compares a proof's htu with the request URL after the syntax- and
// scheme-based normalisation of RFC 3986 §6.2.2-6.2.3 (RFC 9449 §4.3 item 9).
// The htu itself must have no query or fragment (RFC 9449 §4.2); the
// request's are ignored.
func sameHTU(htu, want string) bool {
	norm := func(s string, strict bool) (string, bool) {
		u, err := url.Parse(s)
		if err != nil || u.Opaque != "" || u.User != nil {
			return "", false
		}
		if strict && (u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#")) {
			return "", false
		}
		scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
			port = ""
		}
		if port != "" {
			host += ":" + port
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		return scheme + "://" + host + path, scheme != "" && host != ""
	}
	a, ok1 := norm(htu, true)
	b, ok2 := norm(want, false)
	return ok1 && ok2 && a == b
}

// Server nonces (RFC 9449 §8) are stateless: an issue time rounded down to
// the rotation period, with an HMAC under a key every node shares. A nonce
// is good for the period it was made in and the next one, so a client that
// fetched one just before a rotation is not refused at once.

// Nonce is the nonce to hand out now in a DPoP-Nonce header; "" without NonceKey.
func (v *Verifier) Nonce() string {
	if v.NonceKey == nil {
		return ""
	}
	return v.nonceAt(v.now())
}

func (v *Verifier) rotation() time.Duration {
	if v.NonceRotation < time.Second {
		return DefaultNonceRotation
	}
	return v.NonceRotation
}

func (v *Verifier) nonceAt(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.Unix()/int64(v.rotation()/time.Second)))
	m := hmac.New(sha256.New, v.NonceKey)
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(append(b[:], m.Sum(nil)[:16]...))
}

func (v *Verifier) validNonce(n string, now time.Time) bool {
	if n == "" {
		return false
	}
	for _, t := range []time.Time{now, now.Add(-v.rotation())} {
		if hmac.Equal([]byte(n), []byte(v.nonceAt(t))) {
			return true
		}
	}
	return false
}
