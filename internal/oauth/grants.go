package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Paths of the account pages and APIs of grants and linked devices.
const (
	pathAccountGrants  = "/account/grants"
	pathAccountDevices = "/account/devices"
)

// errNoGrant: the grant does not exist, is revoked already, or is not the
// user's. The three answer alike (404) so that grant IDs of other users
// cannot be probed.
// It is a store.ErrNotFound too, for callers outside this package.
var errNoGrant = fmt.Errorf("no such active grant of this user: %w", store.ErrNotFound)

// grantView is a grant as the JSON API and the page show it.
type grantView struct {
	ID         string     `json:"id"`
	ClientID   string     `json:"clientId"`
	ClientName string     `json:"clientName,omitempty"`
	ThingID    string     `json:"thingId,omitempty"`
	ThingName  string     `json:"thingName,omitempty"`
	Scopes     []string   `json:"scopes"`
	Created    time.Time  `json:"created"`
	LastUsed   *time.Time `json:"lastUsed,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// UserGrants lists the grants of a user, newest first; revoked ones only
// when includeRevoked.
func (s *Server) UserGrants(ctx context.Context, userID string, includeRevoked bool) ([]grantView, error) {
	gs, err := s.st.ListGrants(ctx, store.GrantFilter{UserID: userID, IncludeRevoked: includeRevoked})
	if err != nil {
		return nil, err
	}
	out := make([]grantView, 0, len(gs))
	clients := map[string]*store.Client{}
	things := map[string]*store.Thing{}
	for _, g := range gs {
		if g.UserID != userID { // defence in depth: an empty filter matches all
			continue
		}
		v := grantView{ID: g.ID, ClientID: g.ClientID, ThingID: g.ThingID, Scopes: nonNil(g.Scopes),
			Created: g.Created.UTC(), LastUsed: timePtr(g.LastUsed), RevokedAt: timePtr(g.RevokedAt)}
		c, ok := clients[g.ClientID]
		if !ok {
			if c, err = s.getClient(ctx, s.st, g.ClientID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			clients[g.ClientID] = c
		}
		if c != nil {
			v.ClientName = c.Name
		}
		if g.ThingID != "" {
			t, ok := things[g.ThingID]
			if !ok {
				if t, err = s.opts.Identities.GetThing(ctx, g.ThingID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return nil, err
				}
				things[g.ThingID] = t
			}
			if t != nil {
				v.ThingName = t.DisplayName
			}
		}
		out = append(out, v)
	}
	slices.SortStableFunc(out, func(a, b grantView) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// RevokeUserGrant revokes one grant of userID (its refresh tokens go with
// it), audits "grant.revoke" in the same transaction and publishes
// grant.revoke after commit. A grant of another user, a revoked or a missing
// grant is errNoGrant.
func (s *Server) RevokeUserGrant(ctx context.Context, actor, userID, grantID string) error {
	if userID == "" {
		return errNoGrant
	}
	return s.revokeAudited(ctx, actor, userID, grantID, "revoked by the user or an administrator")
}

// RevokeGrant revokes grant grantID, whoever's it is, for reason, as
// RevokeUserGrant does (audited, grant.revoke published): the households'
// way to end a thing acting for a user once no household holds it for
// them. A revoked or missing grant is errNoGrant.
func (s *Server) RevokeGrant(ctx context.Context, actor, grantID, reason string) error {
	return s.revokeAudited(ctx, actor, "", grantID, reason)
}

// revokeAudited revokes grantID (of userID; "" for anyone's).
func (s *Server) revokeAudited(ctx context.Context, actor, userID, grantID, reason string) error {
	var at time.Time
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		g, err := tx.GetGrant(ctx, grantID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && ((userID != "" && g.UserID != userID) || !g.RevokedAt.IsZero())) {
			return errNoGrant
		}
		if err != nil {
			return err
		}
		at = s.now()
		if err := tx.RevokeGrant(ctx, g.ID, at); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"userId": g.UserID, "clientId": g.ClientID, "thingId": g.ThingID, "reason": reason})
		return s.audit(ctx, tx, actor, "grant.revoke", store.Ref{Kind: "grant", ID: g.ID}, string(detail))
	})
	if err != nil {
		return err
	}
	s.publishRevoke(actor, grantID, reason, at)
	return nil
}

// --- JSON API ---

// accountProblem answers the errors of the grant and device APIs.
func (s *Server) accountProblem(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNoGrant):
		problem.Write(w, http.StatusNotFound, "id", "no active grant with this ID for this user")
	case errors.Is(err, errNotLinked):
		problem.Write(w, http.StatusNotFound, "thingId", "this device is not linked to this user")
	case errors.Is(err, store.ErrNotFound):
		problem.Write(w, http.StatusNotFound, "userId", "no such user")
	default:
		s.log.Error("oauth: account API", "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	}
}

// apiUser returns the signed-in user of an API request, or answers 401 (403
// while the user must change a one-time password).
func (s *Server) apiUser(w http.ResponseWriter, r *http.Request) (*store.User, bool) {
	u, err := s.opts.Sessions.User(r)
	if errors.Is(err, authn.ErrPasswordChangeRequired) {
		problem.Write(w, http.StatusForbidden, "", "password change required: change the one-time password with POST /api/v1/password first")
		return nil, false
	}
	if err != nil {
		problem.Write(w, http.StatusUnauthorized, "", "sign in first: POST /api/v1/signin, then send the session cookie")
		return nil, false
	}
	return u, true
}

// adminTarget returns the {userId} of an admin route after checking the user
// exists, or answers 404.
func (s *Server) adminTarget(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("userId")
	if _, err := s.opts.Identities.GetUser(r.Context(), id); err != nil {
		s.accountProblem(w, r, err)
		return "", false
	}
	return id, true
}

func includeRevoked(w http.ResponseWriter, r *http.Request) (bool, bool) {
	switch v := r.URL.Query().Get("includeRevoked"); v {
	case "", "false":
		return false, true
	case "true":
		return true, true
	default:
		problem.Write(w, http.StatusBadRequest, "includeRevoked", "includeRevoked must be true or false")
		return false, false
	}
}

func (s *Server) writeGrants(w http.ResponseWriter, r *http.Request, userID string) {
	incl, ok := includeRevoked(w, r)
	if !ok {
		return
	}
	gs, err := s.UserGrants(r.Context(), userID, incl)
	if err != nil {
		s.accountProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Grants []grantView `json:"grants"`
	}{gs})
}

func (s *Server) apiListGrants(w http.ResponseWriter, r *http.Request) {
	if u, ok := s.apiUser(w, r); ok {
		s.writeGrants(w, r, u.ID)
	}
}

func (s *Server) apiRevokeGrant(w http.ResponseWriter, r *http.Request) {
	u, ok := s.apiUser(w, r)
	if !ok {
		return
	}
	if err := s.RevokeUserGrant(r.Context(), "user:"+u.ID, u.ID, r.PathValue("id")); err != nil {
		s.accountProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiAdminListGrants(w http.ResponseWriter, r *http.Request) {
	if id, ok := s.adminTarget(w, r); ok {
		s.writeGrants(w, r, id)
	}
}

func (s *Server) apiAdminRevokeGrant(w http.ResponseWriter, r *http.Request) {
	id, ok := s.adminTarget(w, r)
	if !ok {
		return
	}
	if err := s.RevokeUserGrant(r.Context(), s.opts.Actor(r), id, r.PathValue("id")); err != nil {
		s.accountProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiCrossOrigin answers a refused cross-site API request.
func apiCrossOrigin(w http.ResponseWriter, _ *http.Request) {
	problem.Write(w, http.StatusForbidden, "", "cross-origin request refused: call this API from this site or without a browser")
}

// --- pages ---

type grantsPage struct {
	CSRF, UserName, Notice string
	Grants                 []grantView
}

// accountSigninRedirect sends the browser to sign in and back to a fixed
// page path (never one taken from the request).
func accountSigninRedirect(w http.ResponseWriter, r *http.Request, back string) {
	http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(back), http.StatusSeeOther)
}

// accountForm checks a POST of the account pages: a readable form, a
// signed-in user and a valid CSRF token.
func (s *Server) accountForm(w http.ResponseWriter, r *http.Request, back string) (*store.User, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
	if err := r.ParseForm(); err != nil {
		s.accountMessage(w, r, http.StatusBadRequest, back, "Form not accepted", "The form could not be read. Open the page again and resubmit.")
		return nil, false
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		accountSigninRedirect(w, r, back)
		return nil, false
	}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.accountMessage(w, r, http.StatusForbidden, back, "Form expired", "The form expired or did not come from this site. Open the page again and resubmit.")
		return nil, false
	}
	return u, true
}

func (s *Server) accountMessage(w http.ResponseWriter, r *http.Request, status int, back, title, text string) {
	s.kit.Render(w, r, status, s.pages.message, messagePage{Title: title, Text: text, Link: back, LinkText: "Back"})
}

func (s *Server) showGrants(w http.ResponseWriter, r *http.Request) {
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		accountSigninRedirect(w, r, pathAccountGrants)
		return
	}
	gs, err := s.UserGrants(r.Context(), u.ID, false)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p := grantsPage{CSRF: s.csrf.Token(w, r), UserName: u.UserName, Grants: gs}
	if r.URL.Query().Get("done") == "revoked" {
		p.Notice = "Access revoked."
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.grants, p)
}

func (s *Server) submitRevokeGrant(w http.ResponseWriter, r *http.Request) {
	u, ok := s.accountForm(w, r, pathAccountGrants)
	if !ok {
		return
	}
	err := s.RevokeUserGrant(r.Context(), "user:"+u.ID, u.ID, r.PathValue("id"))
	switch {
	case errors.Is(err, errNoGrant):
		s.accountMessage(w, r, http.StatusNotFound, pathAccountGrants, "Access not found", "This access was revoked already or is not yours.")
	case err != nil:
		s.pageError(w, r, err)
	default:
		// Post/Redirect/Get: a reload does not resubmit.
		http.Redirect(w, r, pathAccountGrants+"?done=revoked", http.StatusSeeOther)
	}
}

// registerAccount mounts the grant and device APIs and pages. Every route,
// the admin ones too (administrators may use them from a browser session),
// refuses cross-site requests.
func (s *Server) registerAccount(mux routes.Mux) {
	apiCOP := ui.CrossOrigin(s.issuer, http.HandlerFunc(apiCrossOrigin))
	api := func(h http.HandlerFunc) http.Handler { return apiCOP.Handler(h) }
	admin := func(h http.HandlerFunc) http.Handler { return apiCOP.Handler(s.opts.Admin(h)) }
	mux.Handle("GET /api/v1/grants", api(s.apiListGrants))
	mux.Handle("DELETE /api/v1/grants/{id}", api(s.apiRevokeGrant))
	mux.Handle("GET /api/v1/devices", api(s.apiListDevices))
	mux.Handle("DELETE /api/v1/devices/{thingId}", api(s.apiUnlinkDevice))
	mux.Handle("GET /api/v1/admin/users/{userId}/grants", admin(s.apiAdminListGrants))
	mux.Handle("DELETE /api/v1/admin/users/{userId}/grants/{id}", admin(s.apiAdminRevokeGrant))
	mux.Handle("GET /api/v1/admin/users/{userId}/devices", admin(s.apiAdminListDevices))
	mux.Handle("DELETE /api/v1/admin/users/{userId}/devices/{thingId}", admin(s.apiAdminUnlinkDevice))

	pageCOP := ui.CrossOrigin(s.issuer, http.HandlerFunc(s.crossOrigin))
	page := func(h http.HandlerFunc) http.Handler { return ui.SecurityHeaders(pageCOP.Handler(h)) }
	mux.Handle("GET "+pathAccountGrants, page(s.showGrants))
	mux.Handle("POST "+pathAccountGrants+"/{id}/revoke", page(s.submitRevokeGrant))
	mux.Handle("GET "+pathAccountDevices, page(s.showDevices))
	mux.Handle("POST "+pathAccountDevices+"/{thingId}/unlink", page(s.submitUnlink))
}
