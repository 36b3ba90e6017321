package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// refreshPrefix marks our refresh tokens so that leaked ones are recognisable.
const refreshPrefix = "tir_"

func (s *Server) refreshHash(token string) []byte {
	return keyedHash(s.refreshKey, "refresh-token", token)
}

// newRefreshToken stores and returns a fresh opaque refresh token of grant g
// for scopes and resources.
func (s *Server) newRefreshToken(ctx context.Context, c *store.Client, g *store.Grant, scopes, resources []string, now time.Time) (string, error) {
	tok := refreshPrefix + base64.RawURLEncoding.EncodeToString(randomBytes(32))
	rt := &store.RefreshToken{
		Hash: s.refreshHash(tok), GrantID: g.ID, ClientID: c.ID, Scopes: scopes, Resources: slices.Clone(resources),
		Created: now.UTC(), ExpiresAt: now.Add(s.opts.RefreshTokenLifetime).UTC(),
	}
	if c.Type == store.ClientPublic {
		// RFC 9449 §5: a public client's refresh token is bound to its DPoP
		// key; a confidential client's is bound by its authentication already.
		rt.DPoPJKT = dpopJKT(ctx)
	}
	err := s.st.CreateRefreshToken(ctx, rt)
	return tok, err
}

// refreshGrant is RFC 6749 §6 with rotation (RFC 9700 §4.14.2): every use
// returns a new refresh token, and presenting a rotated one again revokes the
// whole grant, so both the thief's and the victim's tokens die.
func (s *Server) refreshGrant(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, error) {
	raw := form.Get("refresh_token")
	if raw == "" {
		return nil, ErrInvalidRequest.WithDescription("refresh_token is required")
	}
	// Check the scope before the token is used up: a refused request must
	// not burn it (the next, correct request would look like reuse).
	asked, err := requestedScopes(form, c.Scopes)
	if err != nil {
		return nil, err
	}
	hash := s.refreshHash(raw)
	// RFC 9449 §5: only the holder of the bound key may refresh. Checked
	// before the token is used, so that a request without the key (a thief's,
	// or the client's own mistake) cannot burn it or the grant.
	peek, err := s.st.GetRefreshToken(ctx, hash, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrInvalidGrant.WithDescription("refresh token unknown, expired or revoked")
	case err != nil:
		return nil, serverError(err)
	case peek.ClientID == c.ID && peek.DPoPJKT != "" && !equalJKT(peek.DPoPJKT, dpopJKT(ctx)):
		return nil, ErrInvalidGrant.WithDescription("the refresh token is bound to a DPoP key; send a proof signed with it (RFC 9449 §5)")
	}
	// RFC 8707 §2.2: the resources of the original grant bound the refresh's,
	// checked before the token is used, like the scope. A token stored
	// before resources were kept counts as a grant for the client's defaults.
	// Resources taken from the client since (SetClientResources) are gone.
	granted := peek.Resources
	if len(granted) == 0 {
		granted = s.defaultResources(c)
	}
	granted = slices.DeleteFunc(slices.Clone(granted), func(r string) bool { return !slices.Contains(s.clientResources(c), r) })
	if peek.ClientID == c.ID {
		if len(granted) == 0 {
			return nil, ErrInvalidTarget.WithDescription("none of the grant's resources (%s) is still one the client may ask for; authorize again", strings.Join(peek.Resources, " "))
		}
		if ctx, err = withinGrant(ctx, granted, "original grant"); err != nil {
			return nil, err
		}
	}
	// The households' rules, before the token is used: a refusal now (the
	// evening's window closed) keeps it for when they allow again. A
	// rotated token is left to the reuse detection below.
	if peek.ClientID == c.ID && peek.UsedAt.IsZero() {
		g, err := s.st.GetGrant(ctx, peek.GrantID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, serverError(err)
		}
		if err == nil && g.RevokedAt.IsZero() {
			if err := s.householdsAllow(ctx, g, false); err != nil {
				return nil, err
			}
		}
	}
	rt, err := s.st.UseRefreshToken(ctx, hash, s.now())
	switch {
	case errors.Is(err, store.ErrUsed):
		if rerr := s.revokeGrant(ctx, "client:"+c.ID, rt.GrantID, "refresh token reuse"); rerr != nil {
			return nil, serverError(rerr)
		}
		return nil, ErrInvalidGrant.WithDescription("refresh token was used before; the grant is revoked")
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrInvalidGrant.WithDescription("refresh token unknown, expired or revoked")
	case err != nil:
		return nil, serverError(err)
	}
	if rt.ClientID != c.ID {
		// The token leaked to another client: it is burnt now, and the grant
		// can no longer be trusted.
		if rerr := s.revokeGrant(ctx, "client:"+c.ID, rt.GrantID, "refresh token presented by another client"); rerr != nil {
			return nil, serverError(rerr)
		}
		return nil, ErrInvalidGrant.WithDescription("refresh token was not issued to this client")
	}
	g, err := s.st.GetGrant(ctx, rt.GrantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidGrant.WithDescription("grant revoked")
	}
	if err != nil {
		return nil, serverError(err)
	}
	if !g.RevokedAt.IsZero() {
		return nil, ErrInvalidGrant.WithDescription("grant revoked")
	}
	if err := s.activeSubjects(ctx, g.UserID, g.ThingID); err != nil {
		return nil, err
	}
	// RFC 6749 §6: a narrower scope may be asked for, never a wider one;
	// what the grant lacks is left out (the response's scope says so, §3.3).
	scopes := []string{}
	for _, sc := range asked {
		if slices.Contains(rt.Scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if _, ok := form["scope"]; !ok {
		scopes = nonNil(rt.Scopes)
	}
	subject := g.UserID
	if subject == "" {
		subject = c.ID
	}
	// The new refresh token keeps the original scopes (RFC 6749 §6).
	return s.issue(ctx, c, g, subject, scopes, nonNil(rt.Scopes))
}
