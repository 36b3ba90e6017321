package oauth

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

// DPoP (RFC 9449): a client proves possession of a key with a proof JWT per
// request; access tokens (and public clients' refresh tokens) issued under a
// proof are bound to the key's thumbprint (cnf.jkt, RFC 9449 §6.1).

// Errors of RFC 9449 §12.2; at a resource they travel in WWW-Authenticate.
var (
	ErrInvalidDPoPProof = &Error{Code: "invalid_dpop_proof", Status: http.StatusBadRequest}
	ErrUseDPoPNonce     = &Error{Code: "use_dpop_nonce", Status: http.StatusBadRequest}
)

const (
	// dpopMaxAge is how old a proof's iat may be, dpopMaxSkew how far ahead of
	// our clock (RFC 9449 §11.1: a short window limits pre-generated proofs;
	// the skew tolerates device clocks a little fast). The jti is remembered
	// until iat+dpopMaxAge, after which the proof is refused as stale anyway.
	dpopMaxAge  = 60 * time.Second
	dpopMaxSkew = 10 * time.Second
	// dpopMaxLen bounds a proof: a JWS with an RSA-4096 jwk fits easily.
	dpopMaxLen = 8 << 10
	// dpopNonceRotation is the default period of server nonces (RFC 9449 §8).
	dpopNonceRotation = 5 * time.Minute
)

// dpopAlgs are the proof algorithms accepted: asymmetric only (RFC 9449
// §4.3 item 5), never none or HS*.
var dpopAlgs = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}

// jwkPrivateMembers are the JWK members of private or symmetric keys (RFC
// 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2): a proof's jwk must not carry them
// (RFC 9449 §4.3 item 6).
var jwkPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// dpopCheck is what a proof must match besides its own rules.
type dpopCheck struct {
	method string
	// htu is the endpoint's URL under the configured issuer: the Host header
	// is the client's to choose and proves nothing.
	htu string
	// accessToken, when not "", must hash to the proof's ath (RFC 9449 §4.3 item 11).
	accessToken string
}

// dpopClaims is the payload of a proof (RFC 9449 §4.2).
type dpopClaims struct {
	JTI   string      `json:"jti"`
	HTM   string      `json:"htm"`
	HTU   string      `json:"htu"`
	IAT   json.Number `json:"iat"`
	ATH   string      `json:"ath"`
	Nonce string      `json:"nonce"`
}

// dpopProof returns the request's single DPoP header, "" when there is none.
func dpopProof(r *http.Request) (string, *Error) {
	vs := r.Header.Values("DPoP")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		// RFC 9449 §4.3 item 1: exactly one DPoP header.
		return "", ErrInvalidDPoPProof.WithDescription("send exactly one DPoP header")
	case vs[0] == "":
		return "", ErrInvalidDPoPProof.WithDescription("the DPoP header is empty")
	}
	return vs[0], nil
}

// verifyDPoP checks a proof by RFC 9449 §4.3 and returns the RFC 7638
// thumbprint (jkt) of its key. A refusal is an *Error (invalid_dpop_proof or
// use_dpop_nonce); any other error is a failure of the server.
func (s *Server) verifyDPoP(ctx context.Context, raw string, want dpopCheck) (string, error) {
	key, cl, rerr := parseDPoP(raw)
	if rerr != nil {
		return "", rerr
	}
	if cl.HTM != want.method {
		return "", ErrInvalidDPoPProof.WithDescription("htm does not match the request method (RFC 9449 §4.3 item 8)")
	}
	if !sameHTU(cl.HTU, want.htu) {
		return "", ErrInvalidDPoPProof.WithDescription("htu does not match the request URI (RFC 9449 §4.3 item 9)")
	}
	iat, err := cl.IAT.Float64()
	if err != nil || math.IsNaN(iat) || math.IsInf(iat, 0) || iat < 0 || iat > 1<<40 {
		return "", ErrInvalidDPoPProof.WithDescription("iat is missing or not a number")
	}
	now := s.now()
	issued := time.Unix(int64(iat), 0)
	if issued.Before(now.Add(-dpopMaxAge)) || issued.After(now.Add(dpopMaxSkew)) {
		return "", ErrInvalidDPoPProof.WithDescription("iat is outside the accepted window (%s old, %s ahead)", dpopMaxAge, dpopMaxSkew)
	}
	if want.accessToken != "" {
		sum := sha256.Sum256([]byte(want.accessToken))
		if !hmac.Equal([]byte(cl.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) {
			return "", ErrInvalidDPoPProof.WithDescription("ath does not match the access token (RFC 9449 §4.3 item 11)")
		}
	}
	if s.opts.DPoPNonces && !s.validNonce(cl.Nonce, now) {
		// RFC 9449 §8: the answer carries a fresh nonce (the caller adds the header).
		return "", ErrUseDPoPNonce.WithDescription("send the nonce of the DPoP-Nonce header in the proof")
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", ErrInvalidDPoPProof.WithDescription("the jwk has no thumbprint")
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	// RFC 9449 §11.1: a proof is used once. The jti is namespaced by the key
	// so one client's identifiers cannot collide with another's.
	switch err := s.st.UseOnce(ctx, "dpop:"+jkt+":"+cl.JTI, issued.Add(dpopMaxAge)); {
	case errors.Is(err, store.ErrUsed):
		return "", ErrInvalidDPoPProof.WithDescription("the proof was used before (jti)")
	case err != nil:
		return "", err
	}
	return jkt, nil
}

// parseDPoP does the checks of RFC 9449 §4.3 that need nothing but the proof:
// well-formed JWS, typ, alg, public jwk, signature, required claims.
func parseDPoP(raw string) (jwk.Key, *dpopClaims, *Error) {
	bad := func(d string) (jwk.Key, *dpopClaims, *Error) {
		return nil, nil, ErrInvalidDPoPProof.WithDescription("%s", d)
	}
	if len(raw) > dpopMaxLen {
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
	if !slices.Contains(dpopAlgs, hdr.Alg) {
		return bad("alg must be an asymmetric signature algorithm")
	}
	if hdr.Crit != nil {
		return bad("no crit header parameter is understood here")
	}
	var members map[string]json.RawMessage
	if len(hdr.JWK) == 0 || json.Unmarshal(hdr.JWK, &members) != nil {
		return bad("the jwk header is missing or not an object")
	}
	for _, m := range jwkPrivateMembers {
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
	var cl dpopClaims
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

// sameHTU compares a proof's htu with the endpoint URL after the syntax- and
// scheme-based normalisation of RFC 3986 §6.2.2-6.2.3 (RFC 9449 §4.3 item 9).
// The htu itself must have no query or fragment (RFC 9449 §4.2).
func sameHTU(htu, want string) bool {
	norm := func(s string) (string, bool) {
		u, err := url.Parse(s)
		if err != nil || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
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
	a, ok1 := norm(htu)
	b, ok2 := norm(want)
	return ok1 && ok2 && a == b
}

// Server nonces (RFC 9449 §8) are stateless: an issue time rounded down to
// the rotation period, with an HMAC under a key every node shares. A nonce
// is good for the period it was made in and the next one, so a client that
// fetched one just before a rotation is not refused at once.

func (s *Server) nonceAt(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.Unix()/int64(s.opts.DPoPNonceRotation/time.Second)))
	m := hmac.New(sha256.New, s.nonceKey)
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(append(b[:], m.Sum(nil)[:16]...))
}

// currentNonce is the nonce to hand out now.
func (s *Server) currentNonce() string { return s.nonceAt(s.now()) }

func (s *Server) validNonce(n string, now time.Time) bool {
	if n == "" {
		return false
	}
	for _, t := range []time.Time{now, now.Add(-s.opts.DPoPNonceRotation)} {
		if hmac.Equal([]byte(n), []byte(s.nonceAt(t))) {
			return true
		}
	}
	return false
}

// dpopKey carries the jkt of the request's verified proof to issue.
type dpopKey struct{}

func withDPoP(ctx context.Context, jkt string) context.Context {
	return context.WithValue(ctx, dpopKey{}, jkt)
}

// dpopJKT is the thumbprint of the token request's verified proof, "" without one.
func dpopJKT(ctx context.Context) string {
	jkt, _ := ctx.Value(dpopKey{}).(string)
	return jkt
}

// tokenDPoP verifies the token request's proof, if any, and returns ctx
// carrying its jkt (RFC 9449 §5). When nonces are on, every answer to a DPoP
// request carries the current one.
func (s *Server) tokenDPoP(w http.ResponseWriter, r *http.Request) (context.Context, error) {
	raw, perr := dpopProof(r)
	if perr != nil {
		return nil, perr
	}
	if raw == "" {
		return r.Context(), nil
	}
	if s.opts.DPoPNonces {
		w.Header().Set("DPoP-Nonce", s.currentNonce())
	}
	jkt, err := s.verifyDPoP(r.Context(), raw, dpopCheck{method: r.Method, htu: s.issuer + pathToken})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return nil, serverError(err)
		}
		return nil, err
	}
	return withDPoP(r.Context(), jkt), nil
}

// dpopError answers a resource request with the DPoP challenge of RFC 9449
// §7.1 (401; the algorithms we accept in algs).
func dpopError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("WWW-Authenticate", `DPoP algs="`+strings.Join(dpopAlgs, " ")+`", error="`+code+`", error_description="`+strings.ReplaceAll(desc, `"`, "'")+`"`)
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
}

func equalJKT(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }
