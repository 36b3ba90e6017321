package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// authorizationCodeGrant is RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6).
//
// Refresh tokens: issued when the client is registered for refresh_token and
// either the user granted offline_access or the client is confidential (a
// public client's refresh token needs the user's explicit consent to offline
// access, OIDC Core §11).
func (s *Server) authorizationCodeGrant(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, error) {
	raw := form.Get("code")
	if raw == "" {
		return nil, ErrInvalidRequest.WithDescription("code is required")
	}
	ac, err := s.st.UseAuthCode(ctx, s.codeHash(raw), s.now())
	switch {
	case errors.Is(err, store.ErrUsed):
		// RFC 6749 §4.1.2, RFC 9700 §4.5: a replayed code means it leaked;
		// the tokens issued for its first use are revoked.
		if rerr := s.revokeGrant(ctx, "client:"+c.ID, ac.GrantID, "authorization code reuse"); rerr != nil {
			return nil, serverError(rerr)
		}
		return nil, ErrInvalidGrant.WithDescription("authorization code was used before; the grant is revoked")
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrInvalidGrant.WithDescription("authorization code unknown, expired or revoked")
	case err != nil:
		return nil, serverError(err)
	}
	if ac.ClientID != c.ID {
		// RFC 6749 §4.1.3: the code belongs to another client; it leaked.
		if rerr := s.revokeGrant(ctx, "client:"+c.ID, ac.GrantID, "authorization code presented by another client"); rerr != nil {
			return nil, serverError(rerr)
		}
		return nil, ErrInvalidGrant.WithDescription("authorization code was not issued to this client")
	}
	// RFC 6749 §4.1.3: identical to the authorization request's, if it had one.
	if form.Get("redirect_uri") != ac.RedirectURI {
		return nil, ErrInvalidGrant.WithDescription("redirect_uri differs from the authorization request's")
	}
	if !pkceMatches(ac.CodeChallenge, ac.CodeChallengeMethod, form.Get("code_verifier")) {
		return nil, ErrInvalidGrant.WithDescription("code_verifier missing or wrong (RFC 7636 §4.6)")
	}
	if ac.DPoPJKT != "" && !equalJKT(ac.DPoPJKT, dpopJKT(ctx)) {
		// RFC 9449 §10: the code was asked for with dpop_jkt; only a proof by
		// that key redeems it.
		return nil, ErrInvalidGrant.WithDescription("the authorization code is bound to a DPoP key (dpop_jkt); send a DPoP proof signed with it")
	}
	if ctx, err = withinGrant(ctx, ac.Resources, "authorization request"); err != nil {
		return nil, err
	}
	g, err := s.st.GetGrant(ctx, ac.GrantID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !g.RevokedAt.IsZero()) {
		return nil, ErrInvalidGrant.WithDescription("grant revoked")
	}
	if err != nil {
		return nil, serverError(err)
	}
	if err := s.activeSubjects(ctx, ac.UserID, g.ThingID); err != nil {
		return nil, err
	}
	if err := s.householdsAllow(ctx, g, false); err != nil {
		return nil, err
	}
	var refresh []string
	if slices.Contains(c.GrantTypes, GrantRefreshToken) && (slices.Contains(ac.Scopes, "offline_access") || c.Type == store.ClientConfidential) {
		refresh = nonNil(ac.Scopes)
	}
	resp, err := s.issue(ctx, c, g, ac.UserID, ac.Scopes, refresh)
	if err != nil {
		return nil, err
	}
	if slices.Contains(ac.Scopes, "openid") {
		now := s.now()
		// OIDC Core §3.1.3.3, §3.1.3.6: nonce, auth_time, azp and at_hash;
		// gid, the grant, so that a resource server accepting the ID token
		// (the broker, mqtt.idTokenClients) can revoke it with the grant.
		// Not when the access token is bound to a key or certificate: the
		// ID token would then be the bearer credential the client's binding
		// was meant to rule out, and without gid no resource server takes it.
		var extra map[string]any
		if certBinding(ctx) == "" && dpopJKT(ctx) == "" {
			extra = map[string]any{"gid": g.ID}
		}
		resp.IDToken, err = s.opts.Tokens.IDToken(tokens.IDClaims{
			Subject: ac.UserID, Audience: []string{c.ID}, IssuedAt: now, ExpiresAt: now.Add(s.opts.AccessTokenLifetime),
			AuthTime: ac.AuthTime, Nonce: ac.Nonce, AuthorizedParty: c.ID, AccessToken: resp.AccessToken,
			Extra: extra,
		})
		if err != nil {
			return nil, serverError(err)
		}
	}
	return resp, nil
}

// pkceMatches is RFC 7636 §4.6 for S256, the only method accepted.
func pkceMatches(challenge, method, verifier string) bool {
	if challenge == "" || method != "S256" || !validPKCEString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}
