package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2).
const (
	GrantAuthorizationCode = "authorization_code"

	pathAuthorize         = "/oauth2/authorize"
	pathAuthorizeDecision = "/oauth2/authorize/decision"
	pathUserinfo          = "/oauth2/userinfo"

	// authCodeLifetime: RFC 6749 §4.1.2 recommends at most 10 minutes; the
	// client redeems the code at once, so a minute is plenty.
	authCodeLifetime = 60 * time.Second
	// maxAuthParam bounds every authorization request parameter.
	maxAuthParam = 2048
	// paramAuthAfter carries our re-authentication marker through sign-in.
	paramAuthAfter = "thingid_auth_after"
	// reauthWindow is how long a re-authentication marker stays usable.
	reauthWindow = 10 * time.Minute
)

// Authorization endpoint errors (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6, §6.1).
var (
	errUnsupportedResponseType = &Error{Code: "unsupported_response_type", Status: http.StatusBadRequest}
	errLoginRequired           = &Error{Code: "login_required", Status: http.StatusBadRequest}
	errConsentRequired         = &Error{Code: "consent_required", Status: http.StatusBadRequest}
	errRequestNotSupported     = &Error{Code: "request_not_supported", Status: http.StatusBadRequest}
	errRequestURINotSupported  = &Error{Code: "request_uri_not_supported", Status: http.StatusBadRequest}
)

// authParams are the request parameters carried through sign-in and consent.
var authParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "dpop_jkt", "prompt", "max_age", paramAuthAfter}

// authRequest is a parsed authorization request.
type authRequest struct {
	ClientID            string
	RedirectURI         string // as sent; "" when omitted
	ResponseType        string
	State, Nonce        string
	CodeChallenge       string
	CodeChallengeMethod string
	// DPoPJKT binds the code to the DPoP key of that thumbprint (RFC 9449 §10).
	DPoPJKT   string
	Prompt    []string
	MaxAge    time.Duration
	HasMaxAge bool
	AuthAfter string

	// Set by validateAuthorize.
	redirect  string // the effective redirect URI
	scopes    []string
	resources []string // RFC 8707 §2.1; nil when none were named
}

func (a *authRequest) prompt(p string) bool { return slices.Contains(a.Prompt, p) }

// parseAuthorizeRequest checks the syntax of an authorization request.
// pageErr concerns client_id or redirect_uri: it must be shown to the user,
// never redirected (RFC 6749 §4.1.2.1). redirErr may go to the client once
// its redirect URI is validated. Empty parameters count as omitted (§3.1).
func parseAuthorizeRequest(q url.Values) (req *authRequest, pageErr, redirErr *Error) {
	req = &authRequest{}
	get := func(name string) (string, *Error) {
		v := q[name]
		switch {
		case len(v) > 1:
			return "", ErrInvalidRequest.WithDescription("parameter %s appears more than once (RFC 6749 §3.1)", name)
		case len(v) == 0:
			return "", nil
		case len(v[0]) > maxAuthParam:
			return "", ErrInvalidRequest.WithDescription("parameter %s is too long", name)
		}
		return v[0], nil
	}
	var err *Error
	if req.ClientID, err = get("client_id"); err != nil {
		return req, err, nil
	}
	if req.RedirectURI, err = get("redirect_uri"); err != nil {
		return req, err, nil
	}
	if req.ClientID == "" {
		return req, ErrInvalidRequest.WithDescription("client_id is required"), nil
	}
	fail := func(e *Error) (*authRequest, *Error, *Error) { return req, nil, e }
	for _, p := range []struct {
		name string
		dst  *string
	}{
		{"response_type", &req.ResponseType}, {"state", &req.State}, {"nonce", &req.Nonce},
		{"code_challenge", &req.CodeChallenge}, {"code_challenge_method", &req.CodeChallengeMethod},
		{"dpop_jkt", &req.DPoPJKT}, {paramAuthAfter, &req.AuthAfter},
	} {
		if *p.dst, err = get(p.name); err != nil {
			return fail(err)
		}
	}
	for _, name := range []string{"scope", "prompt", "max_age"} {
		if _, err = get(name); err != nil {
			return fail(err)
		}
	}
	if q.Get("request") != "" {
		return fail(errRequestNotSupported.WithDescription("request objects are not supported"))
	}
	if q.Get("request_uri") != "" {
		return fail(errRequestURINotSupported.WithDescription("request_uri is not supported"))
	}
	switch req.ResponseType {
	case "":
		return fail(ErrInvalidRequest.WithDescription("response_type is required"))
	case "code":
	default:
		return fail(errUnsupportedResponseType.WithDescription("only response_type=code is supported"))
	}
	// RFC 7636 §4.2, RFC 9700 §2.1.1: S256 only; a challenge without a method
	// would mean plain (RFC 7636 §4.3), which is refused too.
	switch {
	case req.CodeChallengeMethod != "" && req.CodeChallengeMethod != "S256":
		return fail(ErrInvalidRequest.WithDescription("code_challenge_method must be S256 (plain is not accepted, RFC 9700 §2.1.1)"))
	case req.CodeChallenge != "" && req.CodeChallengeMethod == "":
		return fail(ErrInvalidRequest.WithDescription("code_challenge_method=S256 is required (plain is not accepted, RFC 9700 §2.1.1)"))
	case req.CodeChallenge == "" && req.CodeChallengeMethod != "":
		return fail(ErrInvalidRequest.WithDescription("code_challenge is required with code_challenge_method"))
	case req.CodeChallenge != "" && !validPKCEString(req.CodeChallenge):
		return fail(ErrInvalidRequest.WithDescription("code_challenge must be 43 to 128 unreserved characters (RFC 7636 §4.2)"))
	}
	if req.DPoPJKT != "" && !validJKT(req.DPoPJKT) {
		return fail(ErrInvalidRequest.WithDescription("dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key (RFC 9449 §10, RFC 7638)"))
	}
	if p := q.Get("prompt"); p != "" {
		for _, v := range strings.Split(p, " ") {
			switch v {
			case "":
				continue
			case "none", "login", "consent", "select_account":
			default:
				return fail(ErrInvalidRequest.WithDescription("prompt %q is not supported", v))
			}
			if !slices.Contains(req.Prompt, v) {
				req.Prompt = append(req.Prompt, v)
			}
		}
		// OIDC Core §3.1.2.1: none with any other value is an error.
		if req.prompt("none") && len(req.Prompt) > 1 {
			return fail(ErrInvalidRequest.WithDescription("prompt=none cannot be combined with other values"))
		}
	}
	if v := q.Get("max_age"); v != "" {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n < 0 || n > 1<<31 {
			return fail(ErrInvalidRequest.WithDescription("max_age must be a non-negative number of seconds"))
		}
		req.MaxAge, req.HasMaxAge = time.Duration(n)*time.Second, true
	}
	return req, nil, nil
}

// validJKT: an RFC 7638 SHA-256 thumbprint in unpadded base64url.
func validJKT(v string) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	return err == nil && len(b) == sha256.Size
}

// validPKCEString: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" /
// "." / "_" / "~" (RFC 7636 §4.1, §4.2).
func validPKCEString(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// validateAuthorize checks a request against the client. The redirect URI
// must be one of the registered ones, compared as strings (RFC 9700 §2.1,
// §4.1.3: no prefix, pattern or normalisation); when the client registered
// exactly one, it may be omitted (RFC 6749 §3.1.2.3).
func (s *Server) validateAuthorize(ctx context.Context, q url.Values) (*authRequest, *store.Client, *Error, *Error) {
	req, pageErr, redirErr := parseAuthorizeRequest(q)
	if pageErr != nil {
		return req, nil, pageErr, nil
	}
	c, err := s.loadClient(ctx, req.ClientID)
	if err != nil {
		if e, ok := err.(*Error); ok && e.Status >= 500 {
			return req, nil, e, nil
		}
		return req, nil, ErrInvalidRequest.WithDescription("the application is unknown or disabled"), nil
	}
	switch {
	case req.RedirectURI != "" && slices.Contains(c.RedirectURIs, req.RedirectURI):
		req.redirect = req.RedirectURI
	case req.RedirectURI == "" && len(c.RedirectURIs) == 1:
		req.redirect = c.RedirectURIs[0]
	case req.RedirectURI == "":
		return req, c, ErrInvalidRequest.WithDescription("redirect_uri is required"), nil
	default:
		return req, c, ErrInvalidRequest.WithDescription("redirect_uri is not registered for this application"), nil
	}
	if redirErr != nil {
		return req, c, nil, redirErr
	}
	if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		return req, c, nil, ErrUnauthorizedClient.WithDescription("the client may not use the authorization code flow")
	}
	// RFC 9700 §2.1.1: PKCE for every client (OAuth 2.1); S256 only.
	if req.CodeChallenge == "" {
		return req, c, nil, ErrInvalidRequest.WithDescription("code_challenge (PKCE, S256) is required")
	}
	scopes, serr := requestedScopes(q, c.Scopes)
	if serr != nil {
		return req, c, nil, serr.(*Error)
	}
	req.scopes = nonNil(scopes)
	var rerr *Error
	if req.resources, rerr = s.requestedResources(c, q[paramResource]); rerr != nil {
		return req, c, nil, rerr
	}
	if slices.Contains(req.scopes, "openid") && req.RedirectURI == "" {
		return req, c, nil, ErrInvalidRequest.WithDescription("redirect_uri is required for OpenID Connect (OIDC Core §3.1.2.1)")
	}
	return req, c, nil, nil
}

// serveAuthorize is GET and POST /oauth2/authorize (OIDC Core §3.1.2.1
// allows both; the POST is a form the client's page submits).
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
		if err := r.ParseForm(); err != nil {
			s.authorizePage(w, r, ErrInvalidRequest.WithDescription("the form could not be read"))
			return
		}
		q = r.PostForm
	}
	ctx := r.Context()
	req, c, pageErr, redirErr := s.validateAuthorize(ctx, q)
	if pageErr != nil {
		s.authorizePage(w, r, pageErr)
		return
	}
	if redirErr != nil {
		s.redirectError(w, r, req, redirErr)
		return
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		if req.prompt("none") {
			s.redirectError(w, r, req, errLoginRequired.WithDescription("no signed-in user"))
			return
		}
		s.signinForAuthorize(w, r, q)
		return
	}
	authTime, fresh, err := s.authTime(r, req.AuthAfter)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	// OIDC Core §3.1.2.1: prompt=login and an exceeded max_age ask for a new
	// authentication; a sign-in that answered this very request satisfies both.
	stale := authTime.IsZero() || (req.HasMaxAge && s.now().Sub(authTime) > req.MaxAge)
	if !fresh && (req.prompt("login") || stale) {
		if req.prompt("none") {
			s.redirectError(w, r, req, errLoginRequired.WithDescription("the user must sign in again"))
			return
		}
		s.signinForAuthorize(w, r, q)
		return
	}
	if !req.prompt("consent") {
		cons, err := s.st.GetConsent(ctx, u.ID, c.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.pageError(w, r, err)
			return
		}
		if err == nil && covers(cons.Scopes, req.scopes) {
			s.finishAuthorize(w, r, req, c, u, authTime)
			return
		}
	}
	if req.prompt("none") {
		s.redirectError(w, r, req, errConsentRequired.WithDescription("the user has not allowed this application"))
		return
	}
	s.showAuthorizeConsent(w, r, q, req, c, u)
}

func covers(have, want []string) bool {
	for _, sc := range want {
		if !slices.Contains(have, sc) {
			return false
		}
	}
	return true
}

// authTime is when the request's session signed in, and whether that sign-in
// answered a re-authentication this server asked for (marker).
func (s *Server) authTime(r *http.Request, marker string) (time.Time, bool, error) {
	after, ok := s.checkMarker(marker)
	at, err := s.opts.Sessions.AuthTime(r)
	if err != nil {
		return time.Time{}, false, err
	}
	return at, ok && at.Unix() >= after, nil
}

func (s *Server) markerMAC(unix string) string {
	return hex.EncodeToString(keyedHash(s.counterKey, "reauth-marker", unix)[:16])
}

// checkMarker returns the time a valid, recent re-authentication marker names.
func (s *Server) checkMarker(m string) (int64, bool) {
	ts, mac, ok := strings.Cut(m, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.markerMAC(ts))) {
		return 0, false
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	now := s.now().Unix()
	if err != nil || t > now || now-t > int64(reauthWindow/time.Second) {
		return 0, false
	}
	return t, true
}

// signinForAuthorize sends the browser to sign in and back to this request,
// marked so that the next visit recognises the new authentication. The
// return path is ours; authn refuses anything but a local path anyway.
func (s *Server) signinForAuthorize(w http.ResponseWriter, r *http.Request, q url.Values) {
	back := url.Values{}
	for _, k := range authParams {
		if v := q.Get(k); v != "" && k != paramAuthAfter {
			back.Set(k, v)
		}
	}
	for _, v := range q[paramResource] {
		back.Add(paramResource, v)
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	back.Set(paramAuthAfter, ts+"."+s.markerMAC(ts))
	http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(pathAuthorize+"?"+back.Encode()), http.StatusSeeOther)
}

// authorizePage shows an error that must not be redirected.
func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request, e *Error) {
	if e.Status >= 500 {
		s.pageError(w, r, e.cause)
		return
	}
	s.kit.Render(w, r, http.StatusBadRequest, s.pages.message, messagePage{Title: "Request refused",
		Text: "The application sent an invalid sign-in request (" + e.Description + "). Go back to the application and try again, or tell its developers."})
}

// redirectError sends an error to the client's validated redirect URI with
// state and iss (RFC 6749 §4.1.2.1, RFC 9207 §2).
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req *authRequest, e *Error) {
	if e.Status >= 500 {
		s.log.Error("oauth: authorization request failed", "err", e.cause)
	}
	p := url.Values{"error": {e.Code}}
	if e.Description != "" {
		p.Set("error_description", e.Description)
	}
	s.redirectTo(w, r, req, p)
}

func (s *Server) redirectTo(w http.ResponseWriter, r *http.Request, req *authRequest, p url.Values) {
	u, err := url.Parse(req.redirect)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	q := u.Query() // RFC 6749 §3.1.2: the registered query is kept
	for k, v := range p {
		q[k] = v
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	http.Redirect(w, r, u.String(), status)
}

type hiddenParam struct{ Name, Value string }

type authorizeConsentView struct {
	CSRF, UserName, ClientName, RedirectHost string
	Scopes                                   []scopeView
	Params                                   []hiddenParam
}

func (s *Server) showAuthorizeConsent(w http.ResponseWriter, r *http.Request, q url.Values, req *authRequest, c *store.Client, u *store.User) {
	v := authorizeConsentView{CSRF: s.csrf.Token(w, r), UserName: u.UserName, ClientName: c.Name, Scopes: s.describeScopes(req.scopes)}
	if ru, err := url.Parse(req.redirect); err == nil {
		v.RedirectHost = ru.Host
	}
	// The decision's answer redirects to the client.
	ui.FormTarget(w, req.redirect)
	for _, k := range authParams {
		// prompt and max_age were answered here; the decision does not repeat them.
		if val := q.Get(k); val != "" && k != "prompt" && k != "max_age" {
			v.Params = append(v.Params, hiddenParam{k, val})
		}
	}
	for _, val := range q[paramResource] {
		v.Params = append(v.Params, hiddenParam{paramResource, val})
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.authorizeConsent, v)
}

// submitAuthorizeDecision is POST /oauth2/authorize/decision: Allow or Deny
// on the consent page. The request is validated again from the form.
func (s *Server) submitAuthorizeDecision(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
	if err := r.ParseForm(); err != nil {
		s.authorizePage(w, r, ErrInvalidRequest.WithDescription("the form could not be read"))
		return
	}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.kit.Render(w, r, http.StatusForbidden, s.pages.message, messagePage{Title: "Form expired",
			Text: "The form expired or did not come from this site. Go back to the application and start again."})
		return
	}
	q := url.Values{}
	for _, k := range append(slices.Clone(authParams), paramResource) {
		if v, ok := r.PostForm[k]; ok {
			q[k] = v
		}
	}
	ctx := r.Context()
	req, c, pageErr, redirErr := s.validateAuthorize(ctx, q)
	if pageErr != nil {
		s.authorizePage(w, r, pageErr)
		return
	}
	if redirErr != nil {
		s.redirectError(w, r, req, redirErr)
		return
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		s.signinForAuthorize(w, r, q)
		return
	}
	switch r.PostForm.Get("decision") {
	case "deny":
		s.metrics.consent(flowAuthorize, false)
		s.redirectError(w, r, req, ErrAccessDenied.WithDescription("the user denied the request"))
	case "allow":
		authTime, _, err := s.authTime(r, req.AuthAfter)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		scopes := req.scopes
		if old, err := s.st.GetConsent(ctx, u.ID, c.ID); err == nil {
			scopes = union(old.Scopes, scopes)
		} else if !errors.Is(err, store.ErrNotFound) {
			s.pageError(w, r, err)
			return
		}
		if err := s.st.PutConsent(ctx, &store.Consent{UserID: u.ID, ClientID: c.ID, Scopes: scopes, Created: s.now().UTC()}); err != nil {
			s.pageError(w, r, err)
			return
		}
		s.metrics.consent(flowAuthorize, true)
		s.finishAuthorize(w, r, req, c, u, authTime)
	default:
		s.authorizePage(w, r, ErrInvalidRequest.WithDescription("choose Allow or Deny"))
	}
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// finishAuthorize issues the code under a grant and sends it to the client.
func (s *Server) finishAuthorize(w http.ResponseWriter, r *http.Request, req *authRequest, c *store.Client, u *store.User, authTime time.Time) {
	code, err := s.newAuthCode(r.Context(), req, c, u, authTime)
	if err != nil {
		s.redirectError(w, r, req, serverError(err))
		return
	}
	s.redirectTo(w, r, req, url.Values{"code": {code}})
}

func (s *Server) codeHash(code string) []byte {
	return keyedHash(s.refreshKey, "authorization-code", code)
}

// newAuthCode stores a code (256 random bits, kept only as a keyed hash)
// under the user's grant for the client: a live grant covering the scopes is
// reused, otherwise one is created.
func (s *Server) newAuthCode(ctx context.Context, req *authRequest, c *store.Client, u *store.User, authTime time.Time) (string, error) {
	now := s.now().UTC()
	var g *store.Grant
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		g = nil
		gs, err := tx.ListGrants(ctx, store.GrantFilter{UserID: u.ID, ClientID: c.ID})
		if err != nil {
			return err
		}
		for _, x := range gs {
			if x.RevokedAt.IsZero() && covers(x.Scopes, req.scopes) {
				g = x
				return nil
			}
		}
		g = &store.Grant{UserID: u.ID, ClientID: c.ID, ThingID: c.ThingID, Scopes: req.scopes, Created: now}
		if err := tx.CreateGrant(ctx, g); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"clientId": c.ID, "userId": u.ID, "via": GrantAuthorizationCode})
		return s.audit(ctx, tx, "user:"+u.ID, "grant.create", store.Ref{Kind: "grant", ID: g.ID}, string(detail))
	})
	if err != nil {
		return "", err
	}
	code := base64.RawURLEncoding.EncodeToString(randomBytes(32))
	err = s.st.CreateAuthCode(ctx, &store.AuthCode{
		Hash: s.codeHash(code), ClientID: c.ID, UserID: u.ID, RedirectURI: req.RedirectURI,
		Scopes: req.scopes, Nonce: req.Nonce, CodeChallenge: req.CodeChallenge, CodeChallengeMethod: req.CodeChallengeMethod, DPoPJKT: req.DPoPJKT,
		Resources: req.resources, AuthTime: authTime.UTC(), ExpiresAt: now.Add(authCodeLifetime), GrantID: g.ID,
	})
	return code, err
}
