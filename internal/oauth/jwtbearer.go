package oauth

import (
	"context"
	"net/url"
	"slices"

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
	tok, refusal, err := s.verifyAssertion(ctx, c, raw, "jwt-bearer", jwt.WithRequiredClaim("sub"))
	if err != nil {
		return nil, serverError(err)
	}
	if refusal != "" {
		return nil, ErrInvalidGrant.WithDescription("assertion %s", refusal)
	}
	sub, _ := tok.Subject()
	if sub == "" {
		return nil, ErrInvalidGrant.WithDescription("assertion has an empty sub")
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
	if err := s.householdsAllow(ctx, g, false); err != nil {
		return nil, err
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
