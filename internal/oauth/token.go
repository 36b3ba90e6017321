package oauth

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// maxFormBody bounds the body of token, device authorization and revocation
// requests; a client assertion is the largest legitimate parameter.
const maxFormBody = 32 << 10

// parseForm reads an application/x-www-form-urlencoded body. Every parameter
// may appear at most once (RFC 6749 §3.2); parameters without a value count
// as omitted (RFC 6749 §3.1).
func parseForm(contentType string, body io.Reader) (url.Values, *Error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, ErrInvalidRequest.WithDescription("send the parameters as application/x-www-form-urlencoded")
	}
	b, err := io.ReadAll(io.LimitReader(body, maxFormBody+1))
	if err != nil {
		return nil, ErrInvalidRequest.WithDescription("the request body could not be read")
	}
	if len(b) > maxFormBody {
		return nil, ErrInvalidRequest.WithDescription("the request body is too large")
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, ErrInvalidRequest.WithDescription("malformed form body")
	}
	for k, v := range form {
		if len(v) > 1 && k != paramResource { // RFC 8707 §2: resource may repeat
			return nil, ErrInvalidRequest.WithDescription("parameter %q appears more than once (RFC 6749 §3.2)", k)
		}
		if v[0] == "" {
			delete(form, k)
		}
	}
	return form, nil
}

// readForm checks method and query of an endpoint request and parses its form.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *Error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e := ErrInvalidRequest.WithDescription("use POST (RFC 6749 §3.2)")
		e.Status = http.StatusMethodNotAllowed
		return nil, e
	}
	if r.URL.RawQuery != "" {
		// Credentials in a URL end up in logs.
		return nil, ErrInvalidRequest.WithDescription("send parameters in the body, not the query")
	}
	return parseForm(r.Header.Get("Content-Type"), http.MaxBytesReader(w, r.Body, maxFormBody+1))
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"` // OIDC Core §3.1.3.3
}

// serveToken is the token endpoint. Every answer is counted by grant type
// and result (thingid_oauth_tokens_total).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	r = r.WithContext(s.cache.forRequest(r.Context()))
	gt, status, body, err := s.token(w, r)
	if err != nil {
		s.writeError(w, r, err)
		s.metrics.token(s.grantLabel(gt), errorCode(err))
		return
	}
	writeJSON(w, status, body)
	s.metrics.token(s.grantLabel(gt), bodyCode(status, body))
}

// token answers a token request: the grant type asked for, and the status
// and body of the answer or the error to answer.
func (s *Server) token(w http.ResponseWriter, r *http.Request) (grantType string, status int, body any, err error) {
	form, ferr := readForm(w, r)
	if ferr != nil {
		return "", 0, nil, ferr
	}
	gt := form.Get("grant_type")
	c, x5t, err := s.tokenClient(r, form)
	if err != nil {
		return gt, 0, nil, err
	}
	// RFC 9449 §5: a proof on any grant binds the tokens it yields (issue).
	ctx, err := s.tokenDPoP(w, r)
	if err != nil {
		return gt, 0, nil, err
	}
	// RFC 8705 §3: a client that authenticated with its certificate gets
	// tokens bound to it.
	ctx = withCertBinding(ctx, x5t)
	// An extension grant decides its own audiences (a UMA RPT is for the
	// resource servers of its permissions).
	if ext, isExt := s.opts.Extensions[gt]; isExt {
		status, body, err = s.extension(ctx, ext, c, form)
		return gt, status, body, err
	}
	resp, err := s.grant(ctx, c, form)
	if err != nil {
		return gt, 0, nil, err
	}
	return gt, http.StatusOK, resp, nil
}

// tokenClient checks the grant type of a token request and authenticates
// its client, who must be allowed that grant type; x5t as clientAuth's.
func (s *Server) tokenClient(r *http.Request, form url.Values) (c *store.Client, x5t string, err error) {
	gt := form.Get("grant_type")
	if gt == "" {
		return nil, "", ErrInvalidRequest.WithDescription("grant_type is required")
	}
	if _, isExt := s.opts.Extensions[gt]; !slices.Contains(supportedGrantTypes, gt) && !isExt {
		return nil, "", ErrUnsupportedGrantType.WithDescription("%q is not supported", gt)
	}
	c, x5t, err = s.clientAuth(r, form)
	if err != nil {
		return nil, "", err
	}
	if !slices.Contains(c.GrantTypes, gt) {
		return nil, "", ErrUnauthorizedClient.WithDescription("the client may not use %s", gt)
	}
	return c, x5t, nil
}

// grant answers the token request of one of the built-in grant types for
// the authenticated client c.
func (s *Server) grant(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, error) {
	// RFC 8707 §2: the audiences of the access token.
	res, rerr := s.requestedResources(c, form[paramResource])
	if rerr != nil {
		return nil, rerr
	}
	ctx = withResources(ctx, res)
	switch form.Get("grant_type") {
	case GrantClientCredentials:
		return s.clientCredentials(ctx, c, form)
	case GrantDeviceCode:
		return s.deviceCodeGrant(ctx, c, form)
	case GrantRefreshToken:
		return s.refreshGrant(ctx, c, form)
	case GrantAuthorizationCode:
		return s.authorizationCodeGrant(ctx, c, form)
	case GrantJWTBearer:
		return s.jwtBearerGrant(ctx, c, form)
	}
	return nil, ErrUnsupportedGrantType.WithDescription("%q is not supported", form.Get("grant_type"))
}

// requestedScopes parses the scope parameter (RFC 6749 §3.3) and checks it is
// within allowed; no parameter means all of allowed.
func requestedScopes(form url.Values, allowed []string) ([]string, error) {
	raw, ok := form["scope"]
	if !ok {
		return slices.Clone(allowed), nil
	}
	var out []string
	for _, sc := range strings.Split(raw[0], " ") {
		if sc == "" {
			continue
		}
		if !validScopeToken(sc) {
			return nil, ErrInvalidScope.WithDescription("malformed scope")
		}
		if !slices.Contains(allowed, sc) {
			return nil, ErrInvalidScope.WithDescription("scope %q is not allowed for this client", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// clientCredentials is RFC 6749 §4.4: the client acts for itself, under its
// own grant (one per client, so that revoking it ends all its tokens). No
// refresh token (§4.4.3).
func (s *Server) clientCredentials(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, error) {
	if c.Type != store.ClientConfidential {
		return nil, ErrUnauthorizedClient.WithDescription("client_credentials needs a confidential client")
	}
	scopes, err := requestedScopes(form, c.Scopes)
	if err != nil {
		return nil, err
	}
	if err := s.activeSubjects(ctx, "", c.ThingID); err != nil {
		return nil, thingRefusal(err)
	}
	g, err := s.ownGrant(ctx, c)
	if err != nil {
		return nil, serverError(err)
	}
	return s.issue(ctx, c, g, c.ID, scopes, nil)
}

// ownGrant returns the client's live own grant, creating it on first use
// (through the token endpoint's cache: shared, read only). The
// common case is a read outside any write transaction: the token endpoint must
// not queue on the database's writer for every client_credentials request.
func (s *Server) ownGrant(ctx context.Context, c *store.Client) (*store.Grant, error) {
	find := func(r interface {
		ListGrants(context.Context, store.GrantFilter) ([]*store.Grant, error)
	}) (*store.Grant, error) {
		gs, err := r.ListGrants(ctx, store.GrantFilter{ClientID: c.ID})
		if err != nil {
			return nil, err
		}
		for _, x := range gs {
			if x.UserID == "" {
				return x, nil
			}
		}
		return nil, nil
	}
	k := cacheKey{ownGrant: true, clientID: c.ID}
	if g, ok := s.cache.get(ctx, k).(*store.Grant); ok {
		return g, nil
	}
	if g, err := find(s.st); g != nil || err != nil {
		if g != nil {
			s.cache.put(ctx, k, g)
		}
		return g, err
	}
	var g *store.Grant
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		var err error
		if g, err = find(tx); g != nil || err != nil {
			return err
		}
		g = &store.Grant{ClientID: c.ID, ThingID: c.ThingID, Scopes: slices.Clone(c.Scopes), Created: s.now().UTC()}
		return tx.CreateGrant(ctx, g)
	})
	return g, err
}

// touchEvery bounds how often a grant's last use is written: "last token use"
// is shown to people, to the minute, and a write per token would make the
// database's single writer the token endpoint's bottleneck.
const touchEvery = time.Minute

// issue signs an access token for grant g and marks the grant used;
// refreshScopes, when not nil, asks for a new refresh token with those scopes.
func (s *Server) issue(ctx context.Context, c *store.Client, g *store.Grant, subject string, scopes, refreshScopes []string) (*tokenResponse, error) {
	aud := s.audience(ctx, c)
	for _, a := range aud {
		if !slices.Contains(s.opts.Audience, a) {
			// The configuration changed under the client (http.publicURL,
			// mqtt.audience, gateway.audience): say so, never sign a token
			// no resource accepts.
			return nil, ErrInvalidTarget.WithDescription("the client's resource %q is no longer a resource of this platform; an administrator must set its resources (thingid clients resources)", a)
		}
	}
	now := s.now()
	exp := now.Add(s.opts.AccessTokenLifetime)
	claims := tokens.Claims{
		Subject: subject, Audience: aud, ClientID: c.ID, Scope: scopes,
		IssuedAt: now, ExpiresAt: exp, GrantID: g.ID, ThingID: g.ThingID,
	}
	tokenType := "Bearer"
	if x5t := certBinding(ctx); x5t != "" {
		// RFC 8705 §3.1; the token type stays Bearer (§3).
		claims.Confirmation = &tokens.Confirmation{X5TS256: x5t}
	}
	if jkt := dpopJKT(ctx); jkt != "" {
		// RFC 9449 §6.1, §5: bound to the proof's key, and said so.
		if claims.Confirmation == nil {
			claims.Confirmation = &tokens.Confirmation{}
		}
		claims.Confirmation.JKT = jkt
		tokenType = "DPoP"
	}
	at, err := signer(ctx, s.opts.Tokens)(claims)
	if err != nil {
		return nil, serverError(err)
	}
	resp := &tokenResponse{AccessToken: at, TokenType: tokenType, ExpiresIn: int64(s.opts.AccessTokenLifetime / time.Second), Scope: strings.Join(scopes, " ")}
	if refreshScopes != nil {
		// RFC 8707 §2.2: the refresh token keeps the resources of the grant,
		// those of its first request or else this token's.
		granted, _ := ctx.Value(grantedKey{}).([]string)
		if len(granted) == 0 {
			granted = aud
		}
		if resp.RefreshToken, err = s.newRefreshToken(ctx, c, g, refreshScopes, granted, now); err != nil {
			return nil, serverError(err)
		}
	}
	if now.Sub(g.LastUsed) >= touchEvery {
		if err := s.st.TouchGrant(ctx, g.ID, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("oauth: marking the grant used", "grant", g.ID, "err", err)
		}
	}
	return resp, nil
}

// thingRefusal turns an inactive thing into invalid_client: the client
// standing for it may not act at all.
func thingRefusal(err error) error {
	if errors.Is(err, ErrInvalidGrant) {
		return ErrInvalidClient.WithDescription("the device this client stands for is disabled or deleted")
	}
	return err
}
