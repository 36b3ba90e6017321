package uma

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// introspection is RFC 7662 §2.2 with UMA's permissions.
type introspection struct {
	Active      bool                 `json:"active"`
	Permissions []tokens.Permission  `json:"permissions,omitempty"`
	ClientID    string               `json:"client_id,omitempty"`
	Subject     string               `json:"sub,omitempty"`
	ExpiresAt   int64                `json:"exp,omitempty"`
	IssuedAt    int64                `json:"iat,omitempty"`
	Issuer      string               `json:"iss,omitempty"`
	ID          string               `json:"jti,omitempty"`
	TokenType   string               `json:"token_type,omitempty"`
	Cnf         *tokens.Confirmation `json:"cnf,omitempty"`
}

// serveIntrospect is RFC 7662 for RPTs, as Federated Authorization §5
// extends it: the resource server authenticates with its PAT and learns
// the permissions for its own resources only. An RPT with none of them, or
// revoked (grant revoked, share revoked), or of a disabled user, is
// inactive.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	p, err := s.protection(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "send token as application/x-www-form-urlencoded"))
		return
	}
	b, err := io.ReadAll(io.LimitReader(http.MaxBytesReader(w, r.Body, maxBody+1), maxBody+1))
	if err != nil || len(b) > maxBody {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "the body is unreadable or too large"))
		return
	}
	form, err := url.ParseQuery(string(b))
	if err != nil || len(form["token"]) != 1 || form.Get("token") == "" {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "token is required, once"))
		return
	}
	resp, err := s.introspect(r.Context(), p, form.Get("token"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) introspect(ctx context.Context, p *pat, raw string) (*introspection, error) {
	inactive := &introspection{Active: false}
	c, err := s.opts.Tokens.Inspect(ctx, raw)
	if err != nil {
		var te *tokens.Error
		if errors.As(err, &te) {
			return inactive, nil
		}
		return nil, err
	}
	perms, err := tokens.ParsePermissions(c.Permissions)
	if err != nil {
		return inactive, nil
	}
	if _, live, err := s.liveGrant(ctx, c.GrantID); err != nil || !live {
		return inactive, err
	}
	if _, active, err := s.activeUser(ctx, c.Subject); err != nil || !active {
		return inactive, err
	}
	now := s.now().Unix()
	var mine []tokens.Permission
	for _, pm := range perms {
		if pm.ExpiresAt != 0 && pm.ExpiresAt <= now {
			continue
		}
		res, err := s.resource(ctx, pm.ResourceID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if p.serves(res) {
			mine = append(mine, pm)
		}
	}
	if len(mine) == 0 {
		return inactive, nil
	}
	resp := &introspection{Active: true, Permissions: mine, ClientID: c.ClientID, Subject: c.Subject,
		ExpiresAt: c.ExpiresAt.Unix(), IssuedAt: c.IssuedAt.Unix(), Issuer: c.Issuer, ID: c.ID, TokenType: "Bearer", Cnf: c.Confirmation}
	if c.Confirmation != nil && c.Confirmation.JKT != "" {
		resp.TokenType = "DPoP" // RFC 9449 §6.2
	}
	return resp, nil
}
