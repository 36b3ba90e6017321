package authn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// ErrPasswordChangeRequired: the user signed in with a one-time password
// (store.User.MustChangePassword) and may do nothing but change it or sign out.
var ErrPasswordChangeRequired = errors.New("password change required")

// passwordPath is the page where a signed-in user changes the password.
const passwordPath = "/account/password"

// passwordPage returns where a user who must change the password is sent
// instead of returnTo (kept, so they land there afterwards).
func passwordPage(returnTo string) string {
	if returnTo = safeReturnTo(returnTo); returnTo == "" || returnTo == passwordPath {
		return passwordPath
	}
	return passwordPath + "?return_to=" + url.QueryEscape(returnTo)
}

// passwordChange is the body of POST /api/v1/password.
type passwordChange struct {
	CurrentPassword string `json:"currentPassword"`
	NewPassword     string `json:"newPassword"`
}

// Outcomes of Reauthenticate other than success.
var (
	// ErrWrongPassword: the password is not the user's.
	ErrWrongPassword = errors.New("the password is wrong")
	// ErrTooManyAttempts: the account had too many wrong passwords lately;
	// nothing was checked.
	ErrTooManyAttempts = errors.New("too many wrong passwords; wait before trying again")
)

// Reauthenticate checks that pw is the password of u, the signed-in user of
// r, before an action that asks for it again (deleting the account). It
// follows the rules of a password change: a wrong password counts as a
// failed sign-in of the account, so a stolen session is no oracle for
// guessing it. It returns ErrWrongPassword or ErrTooManyAttempts with how
// long to wait before the next attempt, or a store failure.
func (s *Sessions) Reauthenticate(r *http.Request, u *store.User, pw string) (time.Duration, error) {
	ctx := r.Context()
	now := s.now()
	acct := accountKey(u.UserName)
	if wait, err := s.accountWait(ctx, acct, now); err != nil {
		return 0, err
	} else if wait > 0 {
		return wait, ErrTooManyAttempts
	}
	ok := false
	if u.PasswordHash == "" {
		password.Dummy(pw)
	} else {
		ok, _ = password.Verify(u.PasswordHash, pw)
	}
	if !ok {
		retry, err := s.failed(ctx, acct, now)
		s.audit(ctx, "user:"+u.ID, "user.password-failed", userRef(u.ID), map[string]string{"ip": clientIP(r)})
		if err != nil {
			return 0, err
		}
		return retry, ErrWrongPassword
	}
	return 0, s.succeeded(ctx, acct)
}

// changeFailure is a refused password change: the HTTP status, the field at
// fault ("" when none) and what to tell the user.
type changeFailure struct {
	status int
	field  string
	detail string
	page   ui.Refusal // what the page says instead of detail, in its language
	retry  int        // seconds, for Retry-After
}

// changePassword verifies current, hashes next through the identity service's
// policy, stores it and ends the user's other sessions. A wrong current
// password counts as a failed sign-in of the account: a stolen session must not
// become an oracle for guessing it.
func (s *Sessions) changePassword(w http.ResponseWriter, r *http.Request, sess *store.Session, u *store.User, current, next string) *changeFailure {
	ctx := r.Context()
	switch {
	case current == "":
		return &changeFailure{status: http.StatusBadRequest, field: "currentPassword", detail: "currentPassword is required"}
	case next == "":
		return &changeFailure{status: http.StatusBadRequest, field: "newPassword", detail: "newPassword is required"}
	}
	switch retry, err := s.Reauthenticate(r, u, current); {
	case errors.Is(err, ErrTooManyAttempts):
		return &changeFailure{status: http.StatusTooManyRequests, field: "currentPassword", retry: retryAfter(w, retry),
			detail: "currentPassword: too many wrong attempts; wait before you try again"}
	case errors.Is(err, ErrWrongPassword):
		return &changeFailure{status: http.StatusBadRequest, field: "currentPassword", retry: retryAfter(w, retry),
			detail: "currentPassword is wrong"}
	case err != nil:
		return s.changeError(err)
	}
	if next == current {
		return &changeFailure{status: http.StatusUnprocessableEntity, field: "newPassword", detail: "newPassword must differ from the current password"}
	}
	hash, err := s.users.HashPassword(next, u)
	if ve := (*identity.ValidationError)(nil); errors.As(err, &ve) {
		return &changeFailure{status: http.StatusUnprocessableEntity, field: "newPassword", detail: "newPassword: " + ve.Reason(),
			page: ve.At("")}
	}
	if err != nil {
		return s.changeError(err)
	}
	verified := u.PasswordHash
	errChanged := errors.New("the password was changed meanwhile")
	_, err = s.users.UpdateUser(ctx, "user:"+u.ID, u.ID, 0, func(u *store.User) error {
		if u.PasswordHash != verified {
			return errChanged // changed by someone else since it was verified
		}
		u.PasswordHash = hash // identity clears MustChangePassword
		return nil
	})
	if errors.Is(err, errChanged) {
		return &changeFailure{status: http.StatusConflict, field: "currentPassword", detail: "the password was changed meanwhile; sign in again with the new one"}
	}
	if err != nil {
		return s.changeError(err)
	}
	// Whoever knew the old password may hold a session with it: end all but this one.
	list, err := s.st.ListSessions(ctx, u.ID)
	if err != nil {
		return s.changeError(err)
	}
	ended := 0
	for _, l := range list {
		if bytes.Equal(l.Hash, sess.Hash) {
			continue
		}
		if err := s.st.DeleteSession(ctx, l.Hash); err != nil && !errors.Is(err, store.ErrNotFound) {
			return s.changeError(err)
		}
		ended++
	}
	if ended > 0 {
		s.audit(ctx, "user:"+u.ID, "session.terminate-others", userRef(u.ID), map[string]string{"reason": "password changed", "count": fmt.Sprint(ended)})
	}
	return nil
}

func (s *Sessions) changeError(err error) *changeFailure {
	s.log.Error("authn: changing a password", "err", err)
	return &changeFailure{status: http.StatusInternalServerError,
		detail: "the password could not be changed because of a problem on our side; try again later"}
}

// passwordJSON is POST /api/v1/password: 204, or problem details naming the
// field at fault. Like sign-in it requires application/json.
func (s *Sessions) passwordJSON(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeProblem(w, http.StatusUnsupportedMediaType, "send the passwords as a JSON object with Content-Type: application/json")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	var c passwordChange
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&c)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		writeProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body must not be larger than %d bytes", mbe.Limit))
		return
	}
	if err != nil || dec.Decode(new(json.RawMessage)) != io.EOF {
		writeProblem(w, http.StatusBadRequest, `the body must be one JSON object {"currentPassword": "...", "newPassword": "..."} with no other member`)
		return
	}
	if f := s.changePassword(w, r, currentSession(r), SignedIn(r), c.CurrentPassword, c.NewPassword); f != nil {
		writeProblem(w, f.status, f.detail)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type passwordForm struct {
	CSRF, ReturnTo, UserName string
	Error                    any    // a string or a ui.Refusal, translated on the page
	Field                    string // the input at fault
	Required                 bool   // MustChangePassword
}

// showPassword is GET /account/password.
func (s *Sessions) showPassword(w http.ResponseWriter, r *http.Request) {
	_, u, ok := s.pageUser(w, r)
	if !ok {
		return
	}
	s.renderPassword(w, r, http.StatusOK, passwordForm{UserName: u.UserName, Required: u.MustChangePassword,
		ReturnTo: safeReturnTo(r.URL.Query().Get("return_to"))})
}

// submitPassword is POST /account/password: the form. Success redirects (303)
// to return_to or the signed-in page.
func (s *Sessions) submitPassword(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	if err := r.ParseForm(); err != nil {
		s.kit.Render(w, r, http.StatusBadRequest, s.pages.message, messagePage{Title: "Form not accepted",
			Text: "The form could not be read. Open the page again and resubmit.", Link: passwordPath, LinkText: "Change password"})
		return
	}
	sess, u, ok := s.pageUser(w, r)
	if !ok {
		return
	}
	p := passwordForm{UserName: u.UserName, Required: u.MustChangePassword, ReturnTo: safeReturnTo(r.PostForm.Get("return_to"))}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		p.Error = "The form expired or did not come from this site. Enter the passwords again."
		s.renderPassword(w, r, http.StatusForbidden, p)
		return
	}
	if f := s.changePassword(w, r, sess, u, r.PostForm.Get("currentPassword"), r.PostForm.Get("newPassword")); f != nil {
		p.Error, p.Field = f.detail, f.field
		if f.page != nil {
			p.Error = f.page
		}
		s.renderPassword(w, r, f.status, p)
		return
	}
	http.Redirect(w, r, cmp(p.ReturnTo, s.opts.SignedInPath), http.StatusSeeOther)
}

// pageUser returns the signed-in user of a page, whether or not the password
// must be changed, or redirects to sign-in.
func (s *Sessions) pageUser(w http.ResponseWriter, r *http.Request) (*store.Session, *store.User, bool) {
	sess, u, err := s.current(r)
	if errors.Is(err, ErrNoSession) {
		http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil, nil, false
	}
	if err != nil {
		s.log.Error("authn: reading the session", "err", err)
		s.kit.Render(w, r, http.StatusInternalServerError, s.pages.message, messagePage{Title: "Something went wrong",
			Text: "The page could not be shown because of a problem on our side. Please try again later."})
		return nil, nil, false
	}
	return sess, u, true
}

func (s *Sessions) renderPassword(w http.ResponseWriter, r *http.Request, status int, p passwordForm) {
	p.CSRF = s.csrf.Token(w, r)
	s.kit.Render(w, r, status, s.pages.password, p)
}
