package oauth

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/thingid/thingid/internal/store"
)

// GrantJWTBearer is RFC 7523 §2.1.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// jwtBearerGrant exchanges an assertion signed by one of the client's
// registered keys (RFC 7523 §3): iss the client, sub the thing the client
// stands for or a user who already authorized the client (a live grant of
// that user and client: the assertion never creates authority, it only
// re-uses it, and revoking the grant ends it), aud our issuer or token
// endpoint, a short exp and a single-use jti. No refresh token: the client
// can sign a new assertion.
func (s *Server) jwtBearerGrant(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, error) {
	raw := form.Get("assertion")
	if raw == "" {
		return nil, ErrInvalidRequest.WithDescription("assertion is required")
	}
	fail := ErrInvalidGrant.WithDescription("assertion refused")
	if len(raw) > 8<<10 || len(c.JWKS) == 0 {
		return nil, fail
	}
	set, err := jwk.Parse(c.JWKS)
	if err != nil {
		return nil, serverError(err)
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, fail
	}
	kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	now := s.now()
	var tok jwt.Token
	for i := range set.Len() {
		k, _ := set.Key(i)
		if id, ok := k.KeyID(); kid != "" && ok && id != kid {
			continue
		}
		// The key's own algorithm, never the header's: none and HS* with a
		// public key as secret cannot match (RFC 8725 §3.1).
		alg, err := keyAlgorithm(k)
		if err != nil {
			continue
		}
		tok, err = jwt.Parse([]byte(raw),
			jwt.WithKey(alg, k),
			jwt.WithValidate(true),
			jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
			jwt.WithAcceptableSkew(assertionLeeway),
			jwt.WithIssuer(c.ID),
			jwt.WithRequiredClaim("sub"),
			jwt.WithRequiredClaim("exp"),
			jwt.WithRequiredClaim("jti"),
		)
		if err == nil {
			break
		}
		tok = nil
	}
	if tok == nil {
		return nil, fail
	}
	aud, _ := tok.Audience()
	if !slices.ContainsFunc(aud, func(a string) bool { return a == s.issuer || a == s.issuer+pathToken }) {
		return nil, ErrInvalidGrant.WithDescription("assertion: aud must be the issuer or the token endpoint (RFC 7523 §3)")
	}
	exp, _ := tok.Expiration()
	if exp.After(now.Add(maxAssertionLifetime + assertionLeeway)) {
		return nil, ErrInvalidGrant.WithDescription("assertion: exp is too far in the future (at most %s)", maxAssertionLifetime)
	}
	jti, _ := tok.JwtID()
	sub, _ := tok.Subject()
	if strings.TrimSpace(jti) == "" || sub == "" {
		return nil, fail
	}
	if err := s.st.UseOnce(ctx, "jwt-bearer:"+c.ID+":"+jti, exp.Add(assertionLeeway)); errors.Is(err, store.ErrUsed) {
		return nil, ErrInvalidGrant.WithDescription("assertion was used before (RFC 7523 §3 item 7)")
	} else if err != nil {
		return nil, serverError(err)
	}
	if c.ThingID != "" && sub == c.ThingID {
		if err := s.activeSubjects(ctx, "", c.ThingID); err != nil {
			return nil, err
		}
		scopes, err := requestedScopes(form, c.Scopes)
		if err != nil {
			return nil, err
		}
		g, err := s.ownGrant(ctx, c)
		if err != nil {
			return nil, serverError(err)
		}
		return s.issue(ctx, c, g, c.ID, scopes, nil)
	}
	if err := s.activeSubjects(ctx, sub, c.ThingID); err != nil {
		return nil, err
	}
	gs, err := s.st.ListGrants(ctx, store.GrantFilter{UserID: sub, ClientID: c.ID})
	if err != nil {
		return nil, serverError(err)
	}
	var g *store.Grant
	for _, x := range gs {
		if x.RevokedAt.IsZero() && (g == nil || len(x.Scopes) > len(g.Scopes)) {
			g = x
		}
	}
	if g == nil {
		return nil, ErrInvalidGrant.WithDescription("the subject has not authorized this client")
	}
	allowed := []string{}
	for _, sc := range c.Scopes {
		if slices.Contains(g.Scopes, sc) {
			allowed = append(allowed, sc)
		}
	}
	scopes, err := requestedScopes(form, allowed)
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, c, g, sub, scopes, nil)
}
