package oauth

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

const pathIntrospect = "/oauth2/introspect"

// introspectionAuthMethods are the client authentication methods the
// introspection endpoint accepts: every method with a credential, never
// none (RFC 7662 §2.1: the endpoint requires authorization).
var introspectionAuthMethods = []string{methodBasic, methodPost, methodPrivateKeyJWT, methodTLSClientAuth, methodSelfSignedTLS}

// introspection is the RFC 7662 §2.2 response. Only Active is set for a
// token that is not active: nothing about it may leak (§2.2).
type introspection struct {
	Active    bool                 `json:"active"`
	Scope     string               `json:"scope,omitempty"`
	ClientID  string               `json:"client_id,omitempty"`
	Subject   string               `json:"sub,omitempty"`
	ExpiresAt int64                `json:"exp,omitempty"`
	IssuedAt  int64                `json:"iat,omitempty"`
	Issuer    string               `json:"iss,omitempty"`
	Audience  []string             `json:"aud,omitempty"`
	ID        string               `json:"jti,omitempty"`
	TokenType string               `json:"token_type,omitempty"`
	Cnf       *tokens.Confirmation `json:"cnf,omitempty"`
	GrantID   string               `json:"gid,omitempty"`
}

// serveIntrospect is RFC 7662. Any authenticated confidential client may
// ask; public clients are refused, else anyone holding a client_id could
// probe tokens (§4). What it learns is decided per token: an access token
// by ResourceServers.Disclose, a refresh token only by its own client.
//
// A refresh token is active only to the client it was issued to (it is
// meant for that client and this server alone, RFC 6749 §1.5); looking it up
// does not rotate it.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	form, c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	if err := refuseIntrospector(c); err != nil {
		s.writeError(w, r, err)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		s.writeError(w, r, ErrInvalidRequest.WithDescription("token is required"))
		return
	}
	// RFC 7662 §2.1: token_type_hint only orders the lookups, and an
	// unknown hint is ignored; with a single lookup there is nothing to order.
	resp, err := s.introspect(r.Context(), c, tok)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.metrics.introspection(resp)
	writeJSON(w, http.StatusOK, resp)
}

// refuseIntrospector is the refusal of a client that may not introspect at
// all, at either door: a public client or a thing (RFC 7662 §2.3: a caller
// that is not authorized gets 401; resource servers introspect, devices do
// not). Nil for a confidential client.
func refuseIntrospector(c *store.Client) *Error {
	if c.Type != store.ClientConfidential || c.TokenEndpointAuthMethod == methodNone || isThingClient(c) {
		return ErrInvalidClient.WithDescription("introspection needs a registered confidential client; public clients and devices may not introspect")
	}
	return nil
}

var (
	inactive = &introspection{Active: false}
	// withheld answers a live token that the caller may not learn of: on
	// the wire exactly inactive's (RFC 7662 §2.2), so that a client cannot
	// tell someone else's live token from garbage; a pointer of its own
	// only for the metrics.
	withheld = &introspection{Active: false}
)

// ResourceServers are oauth.resourceServers: each client id with the
// audiences (RFC 8707 resources) whose access tokens it may introspect.
type ResourceServers map[string][]string

// Disclose is the rule of both introspection doors, /oauth2/introspect and
// ACE's /ace/introspect: what client caller may learn of the audiences of
// an active access token issued to client tokenClient for aud, and false
// when it may learn nothing of the token (it is answered as inactive).
// RFC 7662 §4 asks which resource servers may learn about a token, and RFC
// 9701 §4 has the server identify, authenticate and authorize a resource
// server before it answers; so
//
//   - the client the token was issued to learns all of it;
//   - a client listed for one of the token's audiences (a resource server)
//     learns it with aud cut to the audiences it is listed for: which other
//     resources take the token is none of its business (RFC 9701 §9, data
//     minimization);
//   - any other client learns nothing.
func (rs ResourceServers) Disclose(caller, tokenClient string, aud []string) ([]string, bool) {
	if caller == "" {
		return nil, false
	}
	if caller == tokenClient {
		return aud, true
	}
	var shown []string
	for _, a := range aud {
		if slices.Contains(rs[caller], a) {
			shown = append(shown, a)
		}
	}
	return shown, shown != nil
}

// introspect returns what the token says when it is an active access token
// that caller may learn of (ResourceServers.Disclose): valid signature and
// claims, grant neither revoked (asked of the store too, so that a
// revocation on another node counts before its event arrives) nor belonging
// to a disabled user or thing.
func (s *Server) introspect(ctx context.Context, caller *store.Client, tok string) (*introspection, error) {
	if strings.HasPrefix(tok, refreshPrefix) {
		return s.introspectRefresh(ctx, caller, tok)
	}
	claims, err := s.inspectAny(ctx, tok)
	if err != nil {
		var te *tokens.Error
		if errors.As(err, &te) {
			return inactive, nil
		}
		return nil, serverError(err)
	}
	aud, ok := s.opts.ResourceServers.Disclose(caller.ID, claims.ClientID, claims.Audience)
	if !ok {
		s.log.Info("oauth: a client introspected an access token neither issued to it nor of an audience it is a resource server of (oauth.resourceServers); answered inactive",
			"client", caller.ID, "token_client", claims.ClientID, "aud", claims.Audience)
		return withheld, nil
	}
	if _, live, err := s.liveGrant(ctx, claims.GrantID); !live || err != nil {
		return inactive, err
	}
	resp := &introspection{
		Active: true, Scope: strings.Join(claims.Scope, " "), ClientID: claims.ClientID, Subject: claims.Subject,
		ExpiresAt: claims.ExpiresAt.Unix(), IssuedAt: claims.IssuedAt.Unix(), Issuer: claims.Issuer,
		Audience: aud, ID: claims.ID, TokenType: "Bearer", Cnf: claims.Confirmation, GrantID: claims.GrantID,
	}
	if claims.Confirmation != nil && claims.Confirmation.JKT != "" {
		// RFC 9449 §6.2: a DPoP-bound token is introspected as token_type DPoP.
		resp.TokenType = "DPoP"
	}
	return resp, nil
}

// introspectRefresh describes a refresh token to the client it was issued to
// (RFC 7662 §2.2 lets the server tailor answers to the caller; a refresh
// token is nobody else's business): active while it is neither rotated,
// expired nor revoked, and its user and thing are active.
func (s *Server) introspectRefresh(ctx context.Context, caller *store.Client, tok string) (*introspection, error) {
	rt, err := s.st.GetRefreshToken(ctx, s.refreshHash(tok), s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return inactive, nil
	case err != nil:
		return nil, serverError(err)
	case rt.ClientID != caller.ID:
		return withheld, nil
	case !rt.UsedAt.IsZero():
		return inactive, nil
	}
	g, live, err := s.liveGrant(ctx, rt.GrantID)
	if !live || err != nil {
		return inactive, err
	}
	resp := &introspection{Active: true, Scope: strings.Join(rt.Scopes, " "), ClientID: rt.ClientID, Subject: cmp.Or(g.UserID, rt.ClientID),
		IssuedAt: rt.Created.Unix(), Issuer: s.issuer, GrantID: g.ID}
	if !rt.ExpiresAt.IsZero() {
		resp.ExpiresAt = rt.ExpiresAt.Unix()
	}
	return resp, nil
}

// liveGrant reads grant id and tells whether it still stands: not revoked
// (asked of the store, so that a revocation on another node counts before
// its event arrives), its user and thing active.
func (s *Server) liveGrant(ctx context.Context, id string) (*store.Grant, bool, error) {
	g, err := s.st.GetGrant(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, serverError(err)
	case !g.RevokedAt.IsZero():
		return nil, false, nil
	}
	if err := s.activeSubjects(ctx, g.UserID, g.ThingID); err != nil {
		if errors.Is(err, ErrInvalidGrant) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return g, true, nil
}
