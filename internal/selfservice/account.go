package selfservice

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
)

// accountRoutes are the routes of Options.Account: password recovery and
// address changes need mail (404 without it); deleting the account and
// downloading its data do not.
func (h *Handler) accountRoutes() map[string]http.Handler {
	routes := map[string]http.Handler{
		"GET " + pathDelete:        h.page(h.showDelete),
		"POST " + pathDelete:       h.form(h.submitDelete),
		"GET " + pathDeleted:       http.HandlerFunc(h.showDeleted),
		"DELETE /api/v1/account":   h.api(h.deleteJSON),
		"GET " + pathData:          h.page(h.showData),
		"POST " + pathData:         h.form(h.submitData),
		"GET /api/v1/account/data": h.api(h.dataJSON),
	}
	mail := map[string]http.Handler{
		"GET " + pathForgot:             http.HandlerFunc(h.showForgot),
		"POST " + pathForgot:            wrap(h.throttle, http.HandlerFunc(h.submitForgot), h.tooManyPage),
		"GET " + pathForgot + "/sent":   http.HandlerFunc(h.showForgotSent),
		"GET " + pathReset:              wrap(h.throttle, http.HandlerFunc(h.showReset), h.tooManyPage),
		"POST " + pathReset:             wrap(h.throttle, http.HandlerFunc(h.submitReset), h.tooManyPage),
		"GET " + pathReset + "/done":    http.HandlerFunc(h.showResetDone),
		"POST /api/v1/password/forgot":  wrap(h.throttle, http.HandlerFunc(h.forgotJSON), tooManyProblem),
		"POST /api/v1/password/reset":   wrap(h.throttle, http.HandlerFunc(h.resetJSON), tooManyProblem),
		"GET " + pathEmail:              h.page(h.showEmail),
		"POST " + pathEmail:             h.form(h.submitEmail),
		"GET " + pathEmail + "/confirm": wrap(h.throttle, http.HandlerFunc(h.confirmEmail), h.tooManyPage),
		"POST /api/v1/account/email":    h.api(h.emailJSON),
	}
	for pattern, handler := range mail {
		if h.mailer == nil {
			handler = http.NotFoundHandler()
		}
		routes[pattern] = handler
	}
	return routes
}

// userHandler serves a signed-in user.
type userHandler func(w http.ResponseWriter, r *http.Request, u *store.User)

// page serves signed-in users and sends everyone else to sign in first (a
// user who must change a one-time password is sent on to do that there).
func (h *Handler) page(next userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := h.opts.Account.Sessions.User(r)
		if err != nil {
			if !errors.Is(err, authn.ErrNoSession) && !errors.Is(err, authn.ErrPasswordChangeRequired) {
				h.serverError(w, r, "reading the session", err)
				return
			}
			http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
			return
		}
		next(w, r, u)
	})
}

// form is page for a posted form with a valid CSRF token.
func (h *Handler) form(next userHandler) http.Handler {
	return h.page(func(w http.ResponseWriter, r *http.Request, u *store.User) {
		if !h.parseForm(w, r, r.URL.Path) {
			return
		}
		if !h.csrfValid(r, r.PostForm.Get("csrf")) {
			h.render(w, r, http.StatusForbidden, h.pages.message, messagePage{Title: "Form expired",
				Text: "The form expired or did not come from this site. Open the page again and resubmit.",
				Link: r.URL.Path, LinkText: "Open the page again"})
			return
		}
		next(w, r, u)
	})
}

// api serves a signed-in user's JSON request (session cookie, as every
// account API).
func (h *Handler) api(next userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := h.opts.Account.Sessions.User(r)
		switch {
		case errors.Is(err, authn.ErrPasswordChangeRequired):
			writeProblem(w, http.StatusForbidden, "password change required: change the one-time password with POST /api/v1/password first")
		case errors.Is(err, authn.ErrNoSession):
			writeProblem(w, http.StatusUnauthorized, "sign in first: POST /api/v1/signin, then send the session cookie")
		case err != nil:
			h.log.Error("selfservice: reading the session", "err", err)
			writeProblem(w, http.StatusInternalServerError, "a problem on our side; try again later")
		default:
			next(w, r, u)
		}
	})
}
