package ace

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/thingid/thingid/internal/tokens"
)

// Keys are the platform's signing keys (tokens.Keys): a CWT is signed with
// the key JWTs are signed with, under the same kid, so that rotation and
// retirement are one for both formats.
type Keys interface {
	Signer() (kid, alg string, key crypto.Signer)
	PublicKey(ctx context.Context, kid string) (alg string, key crypto.PublicKey, ok bool, err error)
	Now() time.Time
	// MaxTokenLifetime bounds exp-iat of every token signed.
	MaxTokenLifetime() time.Duration
}

// claims is the CWT claims set (RFC 8392 §3, §4): the registered claims by
// their keys, scope (RFC 9200 §5.9.2), cnf (RFC 8747 §3.1), and, as JWTs
// carry them, the grant (gid, the unit of revocation), the thing and the
// client (client_id, which introspection answers under 24, RFC 9200 §5.9.2).
type claims struct {
	Iss    string        `cbor:"1,keyasint"`
	Sub    string        `cbor:"2,keyasint"`
	Aud    audience      `cbor:"3,keyasint"`
	Exp    int64         `cbor:"4,keyasint"`
	Iat    int64         `cbor:"6,keyasint"`
	Cti    []byte        `cbor:"7,keyasint"`
	Cnf    *confirmation `cbor:"8,keyasint"`
	Scope  scopeClaim    `cbor:"9,keyasint,omitzero"`
	Gid    string        `cbor:"gid"`
	Thing  string        `cbor:"thing,omitempty"`
	Client string        `cbor:"client_id,omitempty"`
}

// scopeClaim is scope (9): the granted scopes in the form the token request
// asked them (RFC 9200 §5.8.4.2, RFC 9237 §3): a text string of
// space-separated scopes, or a byte string holding their AIF scope.
type scopeClaim struct {
	Text string // the scopes, space-separated, whatever the form
	AIF  bool   // carried as AIF
}

func (s scopeClaim) MarshalCBOR() ([]byte, error) {
	if !s.AIF {
		return encMode.Marshal(s.Text)
	}
	b, err := aifOf(strings.Fields(s.Text))
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(b)
}

// UnmarshalCBOR reads either form; an AIF scope is read by the token
// endpoint's parser, so a CWT grants through AIF only what a request could
// have asked for.
func (s *scopeClaim) UnmarshalCBOR(b []byte) error {
	var text string
	if err := decMode.Unmarshal(b, &text); err == nil {
		*s = scopeClaim{Text: text}
		return nil
	}
	var raw []byte
	if err := decMode.Unmarshal(b, &raw); err != nil {
		return errors.New("scope (9) must be a text string or a byte string holding an AIF scope")
	}
	scopes, perr := parseAIF(raw)
	if perr != nil {
		return errors.New(perr.Description)
	}
	*s = scopeClaim{Text: strings.Join(scopes, " "), AIF: true}
	return nil
}

// confirmation is cnf (RFC 8747 §3.1): the client's public key as a COSE_Key
// (raw public key or certificate key in DTLS), or the kid of a pre-shared
// key (its PSK identity, RFC 9202 §3.3). Exactly one is set.
type confirmation struct {
	Key *cose.Key `cbor:"1,keyasint,omitempty"`
	Kid []byte    `cbor:"3,keyasint,omitempty"`
}

// audience is aud: one text string, or an array of them (RFC 8392 §3.1.3).
type audience []string

func (a audience) MarshalCBOR() ([]byte, error) {
	if len(a) == 1 {
		return encMode.Marshal(a[0])
	}
	return encMode.Marshal([]string(a))
}

func (a *audience) UnmarshalCBOR(b []byte) error {
	var one string
	if err := decMode.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := decMode.Unmarshal(b, &many); err != nil {
		return errors.New("aud (3) must be a text string or an array of them")
	}
	*a = many
	return nil
}

// coseAlgorithm is the COSE algorithm of a platform key's JOSE algorithm
// (RFC 9053 §2.1, §2.2). RS256 keys sign no CWTs: RFC 8812's RS256 is
// deprecated for COSE and constrained verifiers do not implement it.
func coseAlgorithm(alg string) (cose.Algorithm, error) {
	switch alg {
	case tokens.ES256:
		return cose.AlgorithmES256, nil
	case tokens.EdDSA:
		return cose.AlgorithmEdDSA, nil
	}
	return 0, fmt.Errorf("ace: signing keys of %s cannot sign CWTs; set oauth.signingAlgorithm to ES256 or EdDSA", alg)
}

// sign makes a CWT of c bound to cnf: a COSE_Sign1 message (RFC 9052 §4.2,
// tag 18) with alg and kid in the protected header.
func (s *Server) sign(c tokens.Claims, cnf *confirmation) ([]byte, error) {
	b, _, err := s.issue(c, cnf, false)
	return b, err
}

// issue is sign that also returns the CWT's claims; aif carries the scopes
// as AIF when they all have that form (a request that asked in AIF).
func (s *Server) issue(c tokens.Claims, cnf *confirmation, aif bool) ([]byte, *claims, error) {
	kid, alg, key := s.keys.Signer()
	ca, err := coseAlgorithm(alg)
	if err != nil {
		return nil, nil, err
	}
	cti := make([]byte, 16)
	_, _ = rand.Read(cti)
	cl := &claims{
		Iss: s.issuer, Sub: c.Subject, Aud: c.Audience, Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(),
		Cti: cti, Cnf: cnf, Scope: scopeClaim{Text: strings.Join(c.Scope, " "), AIF: aif && len(c.Scope) > 0 && !slices.ContainsFunc(c.Scope, noAIF)}, Gid: c.GrantID, Thing: c.ThingID, Client: c.ClientID,
	}
	payload, err := encMode.Marshal(cl)
	if err != nil {
		return nil, nil, err
	}
	signer, err := cose.NewSigner(ca, key)
	if err != nil {
		return nil, nil, err
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(ca)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = []byte(kid)
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		return nil, nil, err
	}
	b, err := msg.MarshalCBOR()
	return b, cl, err
}

// verify checks a CWT's signature with the published key its protected kid
// names, in that key's own algorithm (an alg header naming another is
// refused, RFC 8725 §3.1's rule for JWTs), and its claims: iss, aud
// containing audience (any when ""), exp and iat within the leeway, cti, gid and cnf
// present, its grant not revoked. A refusal is an *Error.
func (s *Server) verify(ctx context.Context, raw []byte, audience string) (*claims, error) {
	// RFC 9200 §5.10.1.1: a token that is not even a CWT is 4.00.
	if len(raw) > maxMessage {
		return nil, invalidRequest("the token is larger than %d bytes", maxMessage)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		return nil, invalidRequest("the token is not a tagged COSE_Sign1 message (RFC 9052 §4.2): %v", err)
	}
	kid, ok := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	if !ok {
		return nil, unauthorized("the token has no kid in its protected header")
	}
	alg, key, ok, err := s.keys.PublicKey(ctx, string(kid))
	if err != nil {
		return nil, &Error{Code: "server_error", Description: "the signing keys could not be read", Status: http.StatusInternalServerError, cause: err}
	}
	if !ok {
		return nil, unauthorized("the token's kid is not a key of this platform")
	}
	ca, err := coseAlgorithm(alg)
	if err != nil {
		return nil, unauthorized("the token's key signs no CWTs")
	}
	if got, err := msg.Headers.Protected.Algorithm(); err != nil || got != ca {
		return nil, unauthorized("the token's alg is not its key's algorithm %s", ca)
	}
	verifier, err := cose.NewVerifier(ca, key)
	if err != nil {
		return nil, &Error{Code: "server_error", Description: "the signing key cannot verify", Status: http.StatusInternalServerError, cause: err}
	}
	if err := msg.Verify(nil, verifier); err != nil {
		return nil, unauthorized("the token's signature does not verify")
	}
	var c claims
	if err := decMode.Unmarshal(msg.Payload, &c); err != nil {
		return nil, unauthorized("the token's claims are not a CWT claims set: %v", err)
	}
	if err := s.check(&c, audience); err != nil {
		return nil, err
	}
	return &c, nil
}

// check applies the claims' rules to a verified token.
func (s *Server) check(c *claims, audience string) error {
	now, leeway := s.keys.Now(), s.revocations.Leeway()
	switch {
	case c.Iss != s.issuer:
		return unauthorized("iss (1) is not this platform's")
	case audience != "" && !slices.Contains(c.Aud, audience):
		// RFC 9200 §5.10.1.1: a token for another resource server is 4.03.
		return failure(http.StatusForbidden, "invalid_token", "aud (3) does not name this resource server (%s)", audience)
	case c.Exp == 0 || !now.Before(time.Unix(c.Exp, 0).Add(leeway)):
		return unauthorized("the token has expired (exp, 4)")
	case c.Iat == 0 || time.Unix(c.Iat, 0).After(now.Add(leeway)):
		return unauthorized("iat (6) is missing or in the future")
	case c.Sub == "" || len(c.Cti) == 0 || c.Gid == "":
		return unauthorized("sub (2), cti (7) and gid are required")
	case c.Cnf == nil || (c.Cnf.Key == nil) == (c.Cnf.Kid == nil):
		return unauthorized("cnf (8) must hold a COSE_Key (1) or a kid (3) (RFC 8747 §3.1)")
	case s.revocations.Revoked(c.Gid):
		return unauthorized("the token's grant has been revoked")
	case s.ctis.revoked(c.Cti, now):
		return unauthorized("the token has been revoked (cti, 7)")
	}
	return nil
}

var (
	_ cbor.Marshaler   = audience(nil)
	_ cbor.Unmarshaler = (*audience)(nil)
	_ cbor.Marshaler   = scopeClaim{}
	_ cbor.Unmarshaler = (*scopeClaim)(nil)
)
