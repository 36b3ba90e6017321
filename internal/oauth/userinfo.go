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
	raw, ok := bearerToken(w, r)
	if !ok {
		bearerError(w, http.StatusBadRequest, "invalid_request", "send the access token once, in the Authorization header or the form body")
		return
	}
	if raw == "" {
		// RFC 6750 §3.1: no error code when the request had no token.
		w.Header().Set("WWW-Authenticate", `Bearer realm="thingid"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ctx := r.Context()
	// RFC 9449 §7.1: a token sent with the DPoP scheme comes with a proof over
	// this request and this token; only then does the proof's key count, so a
	// DPoP-bound token sent as Bearer fails CheckBinding.
	dpopScheme := authScheme(r) == "dpop"
	var jkt string
	if dpopScheme {
		proof, perr := dpopProof(r)
		if perr == nil && proof == "" {
			perr = ErrInvalidDPoPProof.WithDescription("the DPoP scheme needs a DPoP proof")
		}
		if perr != nil {
			dpopError(w, http.StatusUnauthorized, perr.Code, perr.Description)
			return
		}
		if s.opts.DPoPNonces {
			w.Header().Set("DPoP-Nonce", s.currentNonce())
		}
		var err error
		jkt, err = s.verifyDPoP(ctx, proof, dpop.Request{Method: r.Method, URL: s.issuer + pathUserinfo, AccessToken: raw})
		var e *Error
		if errors.As(err, &e) {
			dpopError(w, http.StatusUnauthorized, e.Code, e.Description)
			return
		}
		if err != nil {
			s.log.Error("oauth: userinfo", "err", err)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	}
	cl, err := s.opts.Verifier.Verify(ctx, raw, tokens.VerifyOptions{Audience: s.issuer})
	if err == nil {
		var thumb string
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			thumb = tokens.CertThumbprint(r.TLS.PeerCertificates[0])
		}
		err = tokens.CheckBinding(cl, thumb, jkt)
	}
	var te *tokens.Error
	if errors.As(err, &te) {
		if dpopScheme || (cl != nil && cl.Confirmation != nil && cl.Confirmation.JKT != "") {
			dpopError(w, http.StatusUnauthorized, te.Code(), te.Description())
		} else {
			bearerError(w, http.StatusUnauthorized, te.Code(), te.Description())
		}
		return
	}
	if err != nil {
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

// bearerToken finds the access token of a request, Bearer or DPoP (RFC 9449
// §7.1); ok is false when it came in more than one way (RFC 6750 §2). The
// query (§2.3) is not accepted.
func bearerToken(w http.ResponseWriter, r *http.Request) (string, bool) {
	var found []string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP") {
			return "", false
		}
		found = append(found, strings.TrimSpace(tok))
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		form, err := parseForm(r.Header.Get("Content-Type"), http.MaxBytesReader(w, r.Body, maxFormBody+1))
		if err != nil {
			return "", false
		}
		if v := form.Get("access_token"); v != "" {
			found = append(found, v)
		}
	}
	if r.URL.Query().Has("access_token") || len(found) > 1 {
		return "", false
	}
	if len(found) == 0 {
		return "", true
	}
	return found[0], true
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

// authScheme is the lower-cased scheme of the Authorization header.
func authScheme(r *http.Request) string {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.ToLower(scheme)
}
