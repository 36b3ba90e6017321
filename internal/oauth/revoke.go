package oauth

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// serveRevoke is RFC 7009. A refresh token and an access token both stand for
// their grant, so revoking either revokes the grant: every token of it stops
// working, on our resource servers at once through grant.revoke.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	form, c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		s.writeError(w, r, ErrInvalidRequest.WithDescription("token is required"))
		return
	}
	if err := s.revokeToken(r.Context(), c, tok, form.Get("token_type_hint")); err != nil {
		s.writeError(w, r, err)
		return
	}
	// RFC 7009 §2.2: 200 also for tokens that are invalid or unknown.
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) revokeToken(ctx context.Context, c *store.Client, tok, hint string) error {
	actor := "client:" + c.ID
	// RFC 7009 §2.1: the hint only orders the lookups.
	if hint != "access_token" || strings.HasPrefix(tok, refreshPrefix) {
		rt, err := s.st.UseRefreshToken(ctx, s.refreshHash(tok), s.now())
		switch {
		case err == nil || errors.Is(err, store.ErrUsed):
			if err := s.revokeGrantOf(ctx, actor, rt.GrantID); err != nil {
				return err
			}
			if rt.ClientID != c.ID {
				// Looking the token up consumed it, and a refresh token in the
				// hands of another client has leaked: its grant is revoked as
				// at the token endpoint, and the request refused (§2.1).
				return ErrInvalidRequest.WithDescription("the token was not issued to this client")
			}
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return serverError(err)
		}
	}
	claims, err := s.inspectAny(ctx, tok)
	if err != nil {
		var te *tokens.Error
		if errors.As(err, &te) {
			return nil // invalid, expired or revoked already: nothing to do
		}
		return serverError(err)
	}
	if claims.ClientID != c.ID {
		return ErrInvalidRequest.WithDescription("the token was not issued to this client")
	}
	return s.revokeGrantOf(ctx, actor, claims.GrantID)
}

func (s *Server) revokeGrantOf(ctx context.Context, actor, grantID string) error {
	if err := s.revokeGrant(ctx, actor, grantID, "revoked by the client (RFC 7009)"); err != nil {
		return serverError(err)
	}
	return nil
}
