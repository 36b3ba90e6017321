package oauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// serveUserinfo is the OIDC Core §5.3 UserInfo endpoint: GET or POST with a
// bearer access token (RFC 6750 §2.1 header, or §2.2 form body) for this
// issuer carrying openid; claims by scope (OIDC Core §5.4).
func (s *Server) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	p, ok := s.userinfoPresentation(w, r)
	if !ok {
		return
	}
	if p.Token() == "" {
		// RFC 6750 §3.1: no error code when the request had no token.
		w.Header().Add("WWW-Authenticate", `Bearer realm="thingid"`)
		w.Header().Add("WWW-Authenticate", dpop.Challenge("", ""))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ctx := r.Context()
	if p.Scheme() == tokens.SchemeDPoP && s.opts.DPoPNonces {
		w.Header().Set("DPoP-Nonce", s.currentNonce())
	}
	// The verifier checks the sender binding against the request's
	// evidence: a DPoP-bound token needs the DPoP scheme and a proof over
	// this request and token (RFC 9449 §7.1), a certificate-bound one the
	// certificate on this connection (RFC 8705 §3).
	cl, err := s.opts.Verifier.Verify(ctx, p, tokens.VerifyOptions{Audience: s.issuer, Proofs: s.dpopVerifier()})
	var te *tokens.Error
	var de *dpop.Error
	switch {
	case errors.As(err, &de):
		dpopError(w, http.StatusUnauthorized, de.Code, de.Description)
		return
	case errors.As(err, &te) && p.DPoP():
		dpopError(w, http.StatusUnauthorized, te.Code(), te.Description())
		return
	case errors.As(err, &te):
		bearerError(w, http.StatusUnauthorized, te.Code(), te.Description())
		return
	case err != nil:
		s.log.Error("oauth: userinfo", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if !slices.Contains(cl.Scope, "openid") {
		bearerError(w, http.StatusForbidden, "insufficient_scope", "the token lacks the openid scope", `scope="openid"`)
		return
	}
	// The grant and the user are read now: a revocation or a disable acts at once.
	g, err := s.st.GetGrant(ctx, cl.GrantID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (!g.RevokedAt.IsZero() || g.UserID != cl.Subject)) {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "token revoked")
		return
	}
	u, uerr := s.opts.Identities.GetUser(ctx, cl.Subject)
	if err == nil && (errors.Is(uerr, store.ErrNotFound) || (uerr == nil && u.Status != store.StatusActive)) {
		bearerError(w, http.StatusUnauthorized, "invalid_token", "the user is disabled or deleted")
		return
	}
	if err = errors.Join(err, uerr); err != nil {
		s.log.Error("oauth: userinfo", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, userClaims(u, cl.Scope))
}

// userClaims maps a user to OIDC Core §5.1 claims by scope (§5.4).
func userClaims(u *store.User, scopes []string) map[string]any {
	out := map[string]any{"sub": u.ID}
	if slices.Contains(scopes, "profile") {
		name := u.Name.Formatted
		if name == "" {
			name = strings.TrimSpace(u.Name.GivenName + " " + u.Name.FamilyName)
		}
		if name == "" {
			name = u.DisplayName
		}
		set := func(k, v string) {
			if v != "" {
				out[k] = v
			}
		}
		set("name", name)
		set("given_name", u.Name.GivenName)
		set("family_name", u.Name.FamilyName)
		set("preferred_username", u.UserName)
		set("locale", u.Locale)
		set("zoneinfo", u.Timezone)
		if !u.Modified.IsZero() {
			out["updated_at"] = u.Modified.Unix()
		}
	}
	if slices.Contains(scopes, "email") && len(u.Emails) > 0 {
		email := u.Emails[0].Value
		for _, e := range u.Emails {
			if e.Primary {
				email = e.Value
				break
			}
		}
		out["email"] = email
		out["email_verified"] = u.EmailVerified
	}
	return out
}

// userinfoPresentation reads the request's access token, in the
// Authorization header (Bearer, or DPoP: RFC 9449 §7.1) or the form body
// (RFC 6750 §2.2), with its evidence; it answers a malformed request itself.
// The query (§2.3) is not accepted, nor a token sent in two ways (§2).
func (s *Server) userinfoPresentation(w http.ResponseWriter, r *http.Request) (*tokens.Presentation, bool) {
	chain := tokens.PeerCertificates(r)
	p, err := tokens.FromRequest(r, s.issuer+pathUserinfo, chain)
	var re *tokens.RequestError
	if errors.As(err, &re) {
		bearerError(w, http.StatusBadRequest, "invalid_request", re.Description)
		return nil, false
	}
	if p.Token() == "" && r.Header.Get("Authorization") != "" {
		bearerError(w, http.StatusBadRequest, "invalid_request", "the Authorization scheme must be Bearer or DPoP")
		return nil, false
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := parseForm(r.Header.Get("Content-Type"), http.MaxBytesReader(w, r.Body, maxFormBody+1))
		if err != nil {
			bearerError(w, http.StatusBadRequest, "invalid_request", "the form body cannot be read")
			return nil, false
		}
		if v := form.Get("access_token"); v != "" {
			if p.Token() != "" {
				bearerError(w, http.StatusBadRequest, "invalid_request", "send the access token once, in the Authorization header or the form body")
				return nil, false
			}
			p = tokens.FromBody(v, chain)
		}
	}
	return p, true
}

// bearerError answers RFC 6750 §3 with the WWW-Authenticate challenge.
func bearerError(w http.ResponseWriter, status int, code, desc string, extra ...string) {
	v := `Bearer realm="thingid", error="` + code + `", error_description="` + strings.ReplaceAll(desc, `"`, "'") + `"`
	for _, x := range extra {
		v += ", " + x
	}
	w.Header().Set("WWW-Authenticate", v)
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
}
