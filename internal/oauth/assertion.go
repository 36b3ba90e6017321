package oauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/thingid/thingid/internal/store"
)

// verifyAssertion checks a JWT signed by one of c's registered keys, the rules
// client assertions (RFC 7523 §2.2) and authorization grants (§2.1) share (§3):
// the key's own algorithm, never the header's, so that none and HS* with a public
// key as secret cannot match (RFC 8725 §3.1); iss the client; aud our issuer or
// token endpoint; a required exp at most maxAssertionLifetime ahead; a jti used
// only once, recorded under purpose. extra adds claims the caller requires.
// A refused assertion gives a non-empty refusal for the caller's error code
// (invalid_client or invalid_grant); err is a failure of the server.
func (s *Server) verifyAssertion(ctx context.Context, c *store.Client, raw, purpose string, extra ...jwt.ParseOption) (tok jwt.Token, refusal string, err error) {
	const refused = "refused"
	if len(raw) > 8<<10 || len(c.JWKS) == 0 {
		return nil, refused, nil
	}
	set, err := jwk.Parse(c.JWKS)
	if err != nil {
		return nil, "", err
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, refused, nil
	}
	kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	now := s.now()
	for i := range set.Len() {
		k, _ := set.Key(i)
		if id, ok := k.KeyID(); kid != "" && ok && id != kid {
			continue
		}
		alg, err := keyAlgorithm(k)
		if err != nil {
			continue
		}
		opts := append([]jwt.ParseOption{
			jwt.WithKey(alg, k),
			jwt.WithValidate(true),
			jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
			jwt.WithAcceptableSkew(assertionLeeway),
			jwt.WithIssuer(c.ID),
			jwt.WithRequiredClaim("exp"),
			jwt.WithRequiredClaim("jti"),
		}, extra...)
		if tok, err = jwt.Parse([]byte(raw), opts...); err == nil {
			break
		}
		tok = nil
	}
	if tok == nil {
		return nil, refused, nil
	}
	aud, _ := tok.Audience()
	if !slices.ContainsFunc(aud, func(a string) bool { return a == s.issuer || a == s.issuer+PathToken }) {
		return nil, "aud must be the issuer or the token endpoint (RFC 7523 §3)", nil
	}
	exp, _ := tok.Expiration()
	if exp.After(now.Add(maxAssertionLifetime + assertionLeeway)) {
		return nil, "exp is too far in the future (at most " + maxAssertionLifetime.String() + ")", nil
	}
	jti, _ := tok.JwtID()
	if strings.TrimSpace(jti) == "" {
		return nil, refused, nil
	}
	// RFC 7523 §3 item 7: the jti is single-use while the assertion is valid.
	switch err := s.st.UseOnce(ctx, purpose+":"+c.ID+":"+jti, exp.Add(assertionLeeway)); {
	case errors.Is(err, store.ErrUsed):
		return nil, "it was used before (RFC 7523 §3 item 7)", nil
	case err != nil:
		return nil, "", err
	}
	return tok, "", nil
}
