package tokens

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Media types of the "typ" header: RFC 9068 §2.1 for access tokens, and plain
// JWT for ID tokens so one can never pass for the other (RFC 8725 §3.11).
const (
	typeAccessToken = "at+jwt"
	typeIDToken     = "JWT"
)

// Claims are the claims of an access token (RFC 9068 §2.2), what oauth issues
// and resource servers get back from Verify.
type Claims struct {
	Issuer    string    // iss; set by the Issuer
	Subject   string    // sub: the user, or the client for its own grant (RFC 9068 §2.2)
	Audience  []string  // aud: the resource servers the token is for
	ClientID  string    // client_id
	Scope     []string  // scope, space-separated on the wire (RFC 8693 §4.2)
	IssuedAt  time.Time // iat; now when zero
	ExpiresAt time.Time // exp; at most MaxTokenLifetime after iat
	ID        string    // jti; random when empty
	AuthTime  time.Time // auth_time when the user's authentication time is known
	GrantID   string    // gid: the grant, the unit of revocation
	// Confirmation binds the token to a key (RFC 7800 §3.1); nil for bearer tokens.
	Confirmation *Confirmation
	ThingID      string // thing: the thing the client stands for
	// Permissions is the "permissions" claim of a UMA RPT (a JSON array,
	// UMA 2.0 Federated Authorization §5.1.1), carried as is; nil otherwise.
	Permissions json.RawMessage
}

// Confirmation is the "cnf" claim of a sender-constrained token.
type Confirmation struct {
	X5TS256 string `json:"x5t#S256,omitempty"` // RFC 8705 §3.1: SHA-256 of the client certificate
	JKT     string `json:"jkt,omitempty"`      // RFC 9449 §6.1: thumbprint of the DPoP key
}

// IDClaims are the claims of an ID token (OIDC Core §2).
type IDClaims struct {
	Subject   string
	Audience  []string  // the client_id, and other audiences if any
	IssuedAt  time.Time // now when zero
	ExpiresAt time.Time
	AuthTime  time.Time // auth_time, when known
	Nonce     string    // from the authentication request (OIDC Core §3.1.2.1)
	// AuthorizedParty is azp: the client the token was issued to; required when
	// Audience has more than one entry.
	AuthorizedParty string
	// AccessToken, when the ID token is issued with one, is hashed into at_hash
	// (OIDC Core §3.1.3.6); it is not put in the token.
	AccessToken string
	// Extra claims (name, email, ...); registered claim names are refused.
	Extra map[string]any
}

// Issuer signs access and ID tokens with the current signing key.
type Issuer struct {
	keys *Keys
	iss  string
}

// NewIssuer returns an Issuer whose tokens carry iss, the authorization
// server's issuer identifier (RFC 8414 §2: a URL without query or fragment).
func NewIssuer(keys *Keys, iss string) (*Issuer, error) {
	if err := checkIssuer(iss); err != nil {
		return nil, err
	}
	return &Issuer{keys: keys, iss: iss}, nil
}

func checkIssuer(iss string) error {
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("tokens: issuer %q: want an http(s) URL without query or fragment (RFC 8414 §2)", iss)
	}
	return nil
}

// accessTokenJSON is the RFC 9068 §2.2 claim set on the wire.
type accessTokenJSON struct {
	Iss      string        `json:"iss"`
	Sub      string        `json:"sub"`
	Aud      audience      `json:"aud"`
	ClientID string        `json:"client_id"`
	Scope    string        `json:"scope,omitempty"`
	Iat      int64         `json:"iat"`
	Exp      int64         `json:"exp"`
	Jti      string        `json:"jti"`
	AuthTime int64         `json:"auth_time,omitempty"`
	Gid      string        `json:"gid"`
	Cnf      *Confirmation `json:"cnf,omitempty"`
	Thing    string        `json:"thing,omitempty"`
	// Permissions: UMA 2.0 RPTs only.
	Permissions json.RawMessage `json:"permissions,omitempty"`
}

// audience is one string when there is one audience (RFC 7519 §4.1.3).
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// AccessToken signs c as an RFC 9068 access token (typ at+jwt). Subject,
// Audience, ClientID, GrantID and ExpiresAt are required.
func (is *Issuer) AccessToken(c Claims) (string, error) {
	iat, exp, err := is.lifetime(c.IssuedAt, c.ExpiresAt)
	if err != nil {
		return "", err
	}
	switch {
	case c.Subject == "":
		return "", errors.New("tokens: access token: subject is required")
	case c.ClientID == "":
		return "", errors.New("tokens: access token: client_id is required")
	case c.GrantID == "":
		return "", errors.New("tokens: access token: grant id is required")
	}
	if err := checkAudience(c.Audience); err != nil {
		return "", err
	}
	for _, s := range c.Scope {
		// RFC 6749 §3.3: scope-token = 1*NQCHAR.
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }) {
			return "", fmt.Errorf("tokens: access token: invalid scope %q", s)
		}
	}
	if c.Confirmation != nil && c.Confirmation.X5TS256 == "" && c.Confirmation.JKT == "" {
		return "", errors.New("tokens: access token: cnf needs x5t#S256 or jkt")
	}
	if c.Permissions != nil && (!json.Valid(c.Permissions) || c.Permissions[0] != '[') {
		return "", errors.New("tokens: access token: permissions must be a JSON array")
	}
	if c.ID == "" {
		c.ID = rand.Text() // 128 bits (RFC 7519 §4.1.7: unique)
	}
	claims := accessTokenJSON{
		Iss: is.iss, Sub: c.Subject, Aud: c.Audience, ClientID: c.ClientID,
		Scope: strings.Join(c.Scope, " "), Iat: iat, Exp: exp, Jti: c.ID,
		Gid: c.GrantID, Cnf: c.Confirmation, Thing: c.ThingID, Permissions: c.Permissions,
	}
	if !c.AuthTime.IsZero() {
		claims.AuthTime = c.AuthTime.Unix()
	}
	return is.sign(is.keys.current().signing, typeAccessToken, claims)
}

// idTokenClaims are set by IDToken and cannot come from IDClaims.Extra.
var idTokenClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "azp", "at_hash", "c_hash", "cnf"}

// IDToken signs c as an OIDC Core §2 ID token (typ JWT).
func (is *Issuer) IDToken(c IDClaims) (string, error) {
	iat, exp, err := is.lifetime(c.IssuedAt, c.ExpiresAt)
	if err != nil {
		return "", err
	}
	if c.Subject == "" {
		return "", errors.New("tokens: ID token: subject is required")
	}
	if err := checkAudience(c.Audience); err != nil {
		return "", err
	}
	if len(c.Audience) > 1 && c.AuthorizedParty == "" {
		return "", errors.New("tokens: ID token: azp is required with several audiences (OIDC Core §2)")
	}
	claims := make(map[string]any, len(c.Extra)+10)
	for name, v := range c.Extra {
		for _, reserved := range idTokenClaims {
			if name == reserved {
				return "", fmt.Errorf("tokens: ID token: claim %q is set by the issuer", name)
			}
		}
		claims[name] = v
	}
	claims["iss"], claims["sub"], claims["aud"] = is.iss, c.Subject, audience(c.Audience)
	claims["iat"], claims["exp"] = iat, exp
	if !c.AuthTime.IsZero() {
		claims["auth_time"] = c.AuthTime.Unix()
	}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	if c.AuthorizedParty != "" {
		claims["azp"] = c.AuthorizedParty
	}
	sk := is.keys.current().signing
	if c.AccessToken != "" {
		claims["at_hash"] = tokenHash(sk.alg.String(), c.AccessToken)
	}
	return is.sign(sk, typeIDToken, claims)
}

// lifetime checks iat and exp against the keys' MaxTokenLifetime, which is
// what keeps a retired key published until its last token expired.
func (is *Issuer) lifetime(iat, exp time.Time) (int64, int64, error) {
	if iat.IsZero() {
		iat = is.keys.cfg.Now()
	}
	switch {
	case exp.IsZero():
		return 0, 0, errors.New("tokens: expiry is required")
	case !exp.After(iat):
		return 0, 0, errors.New("tokens: expiry must be after issued-at")
	case exp.Sub(iat) > is.keys.cfg.MaxTokenLifetime:
		return 0, 0, fmt.Errorf("tokens: lifetime %s exceeds the maximum of %s", exp.Sub(iat), is.keys.cfg.MaxTokenLifetime)
	}
	return iat.Unix(), exp.Unix(), nil
}

func checkAudience(aud []string) error {
	if len(aud) == 0 {
		return errors.New("tokens: audience is required")
	}
	for _, a := range aud {
		if a == "" {
			return errors.New("tokens: empty audience")
		}
	}
	return nil
}

// tokenHash is at_hash (OIDC Core §3.1.3.6): the left half of the hash of the
// token's ASCII, with the hash of the ID token's alg; SHA-512 for EdDSA with
// Ed25519 (OIDC Core errata set 2).
func tokenHash(alg, token string) string {
	var sum []byte
	if alg == EdDSA {
		s := sha512.Sum512([]byte(token))
		sum = s[:]
	} else {
		s := sha256.Sum256([]byte(token))
		sum = s[:]
	}
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// sign puts claims in a compact JWS with the header alg, kid and typ only.
func (is *Issuer) sign(sk *signingKey, typ string, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("tokens: encode claims: %w", err)
	}
	header, err := json.Marshal(jwsHeader{Alg: sk.alg.String(), Kid: sk.kid, Typ: typ})
	if err != nil {
		return "", fmt.Errorf("tokens: encode header: %w", err)
	}
	return signCompact(sk, header, payload)
}

// jwsHeader is the protected header of every token (RFC 7515 §4.1).
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// signCompact returns the JWS Compact Serialization (RFC 7515 §7.1) of
// payload under header, signed by sk. It is the signing half of what jws.Sign
// does, without its generic header handling, which cost a fifth of the time of
// every token; tokens are parsed and verified by jwx alone.
func signCompact(sk *signingKey, header, payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, enc.EncodedLen(len(header))+enc.EncodedLen(len(payload))+2+enc.EncodedLen(512))
	buf = enc.AppendEncode(buf, header)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := signature(sk, buf)
	if err != nil {
		return "", fmt.Errorf("tokens: sign: %w", err)
	}
	buf = append(buf, '.')
	return string(enc.AppendEncode(buf, sig)), nil
}

// signature signs a JWS signing input with sk's algorithm: ES256 as the
// fixed-size R || S of RFC 7518 §3.4, EdDSA per RFC 8037 §3.1, RS256 as
// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
func signature(sk *signingKey, input []byte) ([]byte, error) {
	switch sk.alg.String() {
	case ES256:
		digest := sha256.Sum256(input)
		der, err := sk.priv.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		return fixedSizeECDSA(der, 32)
	case EdDSA:
		return sk.priv.Sign(rand.Reader, input, crypto.Hash(0))
	case RS256:
		digest := sha256.Sum256(input)
		return sk.priv.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
	return nil, fmt.Errorf("unsupported algorithm %s", sk.alg)
}

// fixedSizeECDSA turns an ASN.1 ECDSA-Sig-Value into R || S, each
// left-padded to size bytes.
func fixedSizeECDSA(der []byte, size int) ([]byte, error) {
	var r, s big.Int
	in, seq := cryptobyte.String(der), cryptobyte.String(nil)
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*size || s.BitLen() > 8*size {
		return nil, errors.New("malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out, nil
}
