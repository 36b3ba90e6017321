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
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The platform's own access tokens are verified here with the standard
// library alone: jwx's generic parsing and validation cost as much as the
// ES256 verification (issue 16: a first MQTT CONNECT over TCP). The rules are
// those of the jwx path, which ID tokens still take (parse), and a
// differential test holds the two together (TestLeanMatchesJWX,
// FuzzLeanMatchesJWX); where this path differs it is stricter, never wider:
// base64url must be canonical (RFC 7515 §2 with RFC 4648 §3.5); a JSON
// object must not repeat a member name (RFC 7515 §4 and RFC 7519 §4 let a
// parser refuse it; jwx takes the last) nor be followed by anything (jwx
// ignores what follows the claims); a registered string claim must not be
// null (jwx reads a null sub as empty); and a NumericDate must be a
// non-negative integer, as the platform writes it (jwx also takes
// fractions, exponents, negative numbers and strings).

// b64url is RFC 7515 §2's base64url without padding, refusing non-zero
// trailing bits so that one token has one encoding.
var b64url = base64.RawURLEncoding.Strict()

// verifyAccess checks in, a compact JWS (nil: too long, keyOf's), as an
// access token for aud and returns its claims and the kid that signed it.
// A refused token is an *Error; an error reading the keys is the server's.
func (v *Verifier) verifyAccess(ctx context.Context, in []byte, aud string) (*Claims, string, error) {
	if in == nil || len(in) > maxTokenSize {
		return nil, "", ErrMalformed.with("too long")
	}
	if !isCompactJWS(in) {
		return nil, "", ErrMalformed.with("not a compact JWS")
	}
	i := bytes.IndexByte(in, '.')
	j := i + 1 + bytes.IndexByte(in[i+1:], '.')
	// The first two parts are the signing input; the three parts are
	// decoded into one buffer: a first CONNECT allocates in proportion to
	// its token.
	dec := make([]byte, b64url.DecodedLen(len(in)))
	header, dec, err1 := decodePart(dec, in[:i])
	payload, dec, err2 := decodePart(dec, in[i+1:j])
	sig, _, err3 := decodePart(dec, in[j+1:])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, "", ErrMalformed.with("not base64url")
	}
	// jwx refuses white space before the header's object; so does this path,
	// and after it too.
	h, err := parseObject(header)
	if err == nil && (header[0] != '{' || header[len(header)-1] != '}') {
		err = errors.New("white space around the object")
	}
	if err != nil {
		return nil, "", ErrMalformed.with("header: " + err.Error())
	}
	var hdr jwsHeader
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"alg", &hdr.Alg}, {"kid", &hdr.Kid}, {"typ", &hdr.Typ}} {
		if val, ok := h.get(f.name); ok && !stringValue(val, f.dst) {
			return nil, "", ErrMalformed.with("header: " + f.name + " must be a string")
		}
	}
	pk, err := v.keys.headerKey(ctx, h.names(), hdr, typeAccessToken)
	if err != nil {
		return nil, "", err
	}
	if !verifySignature(pk, in[:j], sig) {
		return nil, "", ErrSignature
	}
	c, err := v.accessClaims(payload, aud)
	if err != nil {
		return nil, "", err
	}
	// The key's own kid, not the token's copy: the memo keeps it with
	// every token it remembers (issue 16).
	return c, pk.kid, nil
}

// headerKey applies the header rules of every token the platform verifies
// and returns the key that must have signed it: only alg, kid and typ (so
// no jku, jwk, x5u, x5c or crit: RFC 8725 §3.10, RFC 7515 §4.1.11), typ the
// expected media type, kid a published key, alg that key's algorithm.
func (k *Keys) headerKey(ctx context.Context, names []string, h jwsHeader, typ string) (publicKey, error) {
	for _, name := range names {
		if name != "alg" && name != "kid" && name != "typ" {
			return publicKey{}, ErrHeader.with(name)
		}
	}
	// RFC 9068 §4 step 1, RFC 7519 §5.1, RFC 7515 §4.1.9 (media types are
	// case-insensitive).
	if !strings.EqualFold(h.Typ, typ) && !strings.EqualFold(h.Typ, "application/"+typ) {
		return publicKey{}, ErrType.with(fmt.Sprintf("typ %q, want %s", h.Typ, typ))
	}
	if h.Kid == "" {
		return publicKey{}, ErrUnknownKey.with("no kid")
	}
	pk, ok, err := k.lookup(ctx, h.Kid)
	if err != nil {
		return publicKey{}, err
	}
	if !ok {
		return publicKey{}, ErrUnknownKey.with(h.Kid)
	}
	// RFC 8725 §3.1: the algorithm is the key's, never the header's, so
	// none, HS256-with-the-public-key and every other substitution fail here.
	if h.Alg != pk.alg.String() {
		return publicKey{}, ErrAlgorithm.with(fmt.Sprintf("%s, but key %s is %s", h.Alg, h.Kid, pk.alg))
	}
	return pk, nil
}

// verifySignature checks sig over the JWS signing input with pk and its one
// algorithm: ES256 as R || S of 32 bytes each (RFC 7518 §3.4), EdDSA
// (RFC 8037 §3.1), RS256 (RFC 7518 §3.3).
func verifySignature(pk publicKey, input, sig []byte) bool {
	switch key := pk.key.(type) {
	case *ecdsa.PublicKey:
		if len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256(input)
		return ecdsa.VerifyASN1(key, digest[:], asn1Signature(sig))
	case ed25519.PublicKey:
		return ed25519.Verify(key, input, sig)
	case *rsa.PublicKey:
		digest := sha256.Sum256(input)
		return rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig) == nil
	}
	return false
}

// decodePart decodes one base64url part of a compact JWS into the start of
// dst and returns it (its capacity its length, so that nothing appended to
// it runs into the next part) and the rest of dst.
func decodePart(dst, src []byte) (part, rest []byte, err error) {
	n, err := b64url.Decode(dst, src)
	return dst[:n:n], dst[n:], err
}

// asn1Signature is an ES256 signature, R || S of 32 bytes each (RFC 7518
// §3.4), as the DER SEQUENCE of two INTEGERs that crypto/ecdsa verifies
// (RFC 3279 §2.2.3; ecdsa.Verify builds the same from math/big integers):
// each the shortest big-endian form of a non-negative number, a zero byte
// before one whose top bit is set. A zero R or S stays zero (02 01 00),
// which the verification refuses.
func asn1Signature(rs []byte) []byte {
	integer := func(out, n []byte) []byte {
		for len(n) > 1 && n[0] == 0 {
			n = n[1:]
		}
		if n[0]&0x80 != 0 {
			return append(append(out, 0x02, byte(len(n)+1), 0), n...)
		}
		return append(append(out, 0x02, byte(len(n))), n...)
	}
	// At most 2 + 2 × (2 + 33) bytes, so every length fits in one byte.
	body := integer(integer(make([]byte, 2, 72), rs[:32]), rs[32:])
	body[0], body[1] = 0x30, byte(len(body)-2)
	return body
}

// accessClaims decodes and checks a verified payload in the jwx path's
// order (so both refuse a token for the same reason): the registered
// claims' types, iat, exp and nbf with the leeway, iss, aud, the required
// claims, then the private claims' types.
func (v *Verifier) accessClaims(payload []byte, aud string) (*Claims, error) {
	m, err := parseObject(payload)
	if err != nil {
		return nil, ErrMalformed.with("claims: " + err.Error())
	}
	c := &Claims{}
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"iss", &c.Issuer}, {"sub", &c.Subject}, {"jti", &c.ID}} {
		if val, ok := m.get(f.name); ok && !stringValue(val, f.dst) {
			return nil, ErrMalformed.with(f.name + " must be a string")
		}
	}
	if val, ok := m.get("aud"); ok {
		if c.Audience, ok = audienceValue(val); !ok {
			return nil, ErrMalformed.with("aud must be a string or an array of strings")
		}
	}
	var nbf time.Time
	for _, f := range [...]struct {
		name string
		dst  *time.Time
	}{{"iat", &c.IssuedAt}, {"exp", &c.ExpiresAt}, {"nbf", &nbf}} {
		if val, ok := m.get(f.name); ok {
			if *f.dst, ok = numericDate(val); !ok {
				return nil, ErrMalformed.with(f.name + " must be a non-negative integer")
			}
		}
	}
	// RFC 7519 §4.1.4-4.1.6 with jwx's rules: now in whole seconds, the
	// leeway on each side.
	now := v.keys.cfg.Now().Truncate(time.Second)
	switch {
	case m.has("iat") && now.Before(c.IssuedAt.Add(-v.leeway)):
		return nil, ErrIssuedAt
	case m.has("exp") && !now.Before(c.ExpiresAt.Add(v.leeway)):
		return nil, ErrExpired
	case m.has("nbf") && now.Before(nbf.Add(-v.leeway)):
		return nil, ErrNotYetValid
	case c.Issuer != v.iss:
		return nil, ErrIssuer // RFC 9068 §4 step 3: exactly
	case !slices.Contains(c.Audience, aud):
		return nil, ErrAudience
	}
	// Equal to what was checked: the verifier's strings, not a copy per
	// token (the memo keeps the claims of every token it remembers).
	c.Issuer = v.iss
	if len(c.Audience) == 1 {
		c.Audience[0] = aud
	}
	for _, name := range accessTokenClaims {
		if !m.has(name) {
			return nil, ErrMissing.with(name)
		}
	}
	var scope string
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"client_id", &c.ClientID}, {"gid", &c.GrantID}, {"scope", &scope}, {"thing", &c.ThingID}} {
		if val, ok := m.get(f.name); ok && (!stringValue(val, f.dst) || *f.dst == "") {
			return nil, ErrMalformed.with(f.name + " must be a non-empty string")
		}
	}
	c.Scope = strings.Fields(scope)
	if val, ok := m.get("auth_time"); ok {
		var at float64
		if json.Unmarshal(val, &at) != nil || val[0] == 'n' {
			return nil, ErrMalformed.with("auth_time must be a number")
		}
		c.AuthTime = time.Unix(int64(at), 0)
	}
	if val, ok := m.get("cnf"); ok {
		var cnf map[string]any
		if json.Unmarshal(val, &cnf) != nil || cnf == nil {
			return nil, ErrMalformed.with("cnf must be an object")
		}
		c.Confirmation = &Confirmation{}
		c.Confirmation.X5TS256, _ = cnf["x5t#S256"].(string)
		c.Confirmation.JKT, _ = cnf["jkt"].(string)
	}
	if val, ok := m.get("permissions"); ok {
		// UMA RPTs: kept as JSON for internal/uma to read, compacted.
		var perms []any
		if json.Unmarshal(val, &perms) != nil || perms == nil {
			return nil, ErrMalformed.with("permissions must be an array")
		}
		c.Permissions, _ = json.Marshal(perms) // values decoded from JSON marshal back
	}
	return c, nil
}

// stringValue decodes a JSON string (not null) into dst.
func stringValue(val []byte, dst *string) bool {
	s, ok := stringOf(val)
	if ok {
		*dst = s
	}
	return ok
}

// audienceValue decodes aud (RFC 7519 §4.1.3): one string or an array of them.
func audienceValue(val []byte) ([]string, bool) {
	if one, ok := stringOf(val); ok {
		return []string{one}, true
	}
	return stringsOf(val)
}

// numericDate decodes a NumericDate (RFC 7519 §2) as the platform writes
// it: whole seconds, not negative.
func numericDate(val []byte) (time.Time, bool) {
	if bytes.IndexFunc(val, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(string(val), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0).UTC(), true
}
