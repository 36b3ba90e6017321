package selfservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Password recovery (OWASP Forgot Password Cheat Sheet): a user names the
// account by user name or e-mail address; the answer is the same whether it
// exists or not, and comes before anything about the account is looked up,
// because the lookup and the e-mail happen in the background. The link
// carries a 256-bit random token, of which the store keeps only a keyed
// hash; it works once, for Options.ResetTTL. Setting the new password (under
// the password policy) ends every session and every other outstanding link
// of the user, and a one-time password's obligation.

const (
	purposeReset = "thingid selfservice password-reset v1"
	// resetTokenBytes is the token's randomness: 256 bits.
	resetTokenBytes = 32
	// maxSending bounds the e-mails being sent at once in the background.
	maxSending = 16
	// sendTimeout bounds one background e-mail.
	sendTimeout = 30 * time.Second
	pathForgot  = "/password/forgot"
	pathReset   = "/password/reset"
)

// ErrNoVerifiedEmail: the user has no verified e-mail address to send a
// reset link to; an administrator hands out a one-time password instead.
var ErrNoVerifiedEmail = errors.New("the user has no verified e-mail address")

// errResetLink is the one answer for a reset token that is unknown, used,
// expired, damaged or another user's.
var errResetLink = errors.New("the reset link is not valid")

// background runs fn, which sends e-mails of the kind what (the metric's
// label), after the request has been answered, bounded by maxSending: an
// answer that waits for nothing tells nothing by its timing. When the bound
// is reached the e-mail is not sent (logged and counted as dropped).
func (h *Handler) background(what string, fn func(ctx context.Context)) {
	select {
	case h.sending <- struct{}{}:
	default:
		h.log.Warn("selfservice: too many e-mails being sent; one was dropped", "what", what)
		h.mailCount.WithLabelValues(what, "dropped").Inc()
		return
	}
	h.pending.Add(1)
	go func() {
		defer func() { <-h.sending; h.pending.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		defer cancel()
		fn(ctx)
	}()
}

// mailKey is the throttling key of what someone typed to name an account.
func mailKey(typed string) string {
	return "typed:" + strings.ToLower(identity.NormalizeUserName(strings.TrimSpace(typed)))
}

// allowMail takes one e-mail from the bucket of each key in turn; the first
// empty bucket refuses.
func (h *Handler) allowMail(keys ...string) bool {
	now := h.now()
	for _, k := range keys {
		if ok, _ := h.mailBudget.allow(k, now); !ok {
			return false
		}
	}
	return true
}

// forgot is what a user asked for on the forgot-password page or API. It
// returns at once; the rest happens in the background (mailReset).
func (h *Handler) forgot(account string) {
	h.background("password_reset", func(ctx context.Context) { h.mailReset(ctx, account) })
}

// mailReset finds the account named by what the user typed (a verified e-mail
// address, or a user name) and mails it a reset link, within the e-mail
// throttle of the typed name and of the account.
func (h *Handler) mailReset(ctx context.Context, account string) {
	if !h.allowMail(mailKey(account)) {
		h.log.Info("selfservice: password reset throttled for what was typed")
		h.mailCount.WithLabelValues("password_reset", "throttled").Inc()
		return
	}
	var u *store.User
	var err error
	if strings.Contains(account, "@") {
		u, err = h.users.GetUserByVerifiedEmail(ctx, strings.TrimSpace(account))
	} else {
		u, err = h.users.GetUserByName(ctx, account)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.log.Info("selfservice: password reset asked for no account")
		return
	case err != nil:
		h.log.Error("selfservice: password reset: looking up the account", "err", err)
		return
	case u.Status != store.StatusActive:
		h.log.Info("selfservice: password reset asked for a disabled account", "id", u.ID)
		return
	case !h.allowMail("user:" + u.ID):
		h.log.Info("selfservice: password reset throttled for the account", "id", u.ID)
		h.mailCount.WithLabelValues("password_reset", "throttled").Inc()
		return
	}
	if err := h.sendReset(ctx, "selfservice", u); err != nil && !errors.Is(err, ErrNoVerifiedEmail) {
		h.log.Error("selfservice: sending a password reset", "id", u.ID, "err", err)
	}
}

// SendPasswordReset mails user userID a password reset link, as if they had
// asked for it (an administrator's "force a password reset"); actor is
// recorded in the audit log. It is ErrNoVerifiedEmail when the user has no
// verified address, store.ErrNotFound when there is no such user, and an
// error when password recovery is off (no mail).
func (h *Handler) SendPasswordReset(ctx context.Context, actor, userID string) error {
	if h.mailer == nil || h.opts.Account == nil {
		return errors.New("selfservice: password recovery is off: no SMTP host and no outbox")
	}
	u, err := h.users.GetUser(ctx, userID)
	if err != nil {
		return err
	}
	return h.sendReset(ctx, actor, u)
}

// sendReset stores a new reset of u and mails its link to u's verified
// address.
func (h *Handler) sendReset(ctx context.Context, actor string, u *store.User) error {
	to := u.VerifiedEmail()
	if to == "" {
		return ErrNoVerifiedEmail
	}
	tok := make([]byte, resetTokenBytes)
	_, _ = rand.Read(tok)
	now := h.now()
	r := &store.PasswordReset{Hash: h.mac(purposeReset, tok), UserID: u.ID, Created: now, ExpiresAt: now.Add(h.opts.ResetTTL)}
	if err := h.users.RequestPasswordReset(ctx, actor, r); err != nil {
		return fmt.Errorf("storing the reset: %w", err)
	}
	link := h.baseURL + pathReset + "?token=" + b64.EncodeToString(tok)
	if err := h.mail(ctx, "password_reset", to, u, mailData{Link: link, Within: h.opts.ResetTTL}); err != nil {
		return fmt.Errorf("mailing the reset link: %w", err)
	}
	h.log.Info("selfservice: password reset link sent", "id", u.ID, "actor", actor)
	return nil
}

func greeting(u *store.User) string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.UserName
}

// resetHash is the stored hash of a token as found in a link; a token that
// cannot be one is errResetLink.
func (h *Handler) resetHash(token string) ([]byte, error) {
	tok, err := decodeB64(token)
	if err != nil || len(tok) != resetTokenBytes {
		return nil, errResetLink
	}
	return h.mac(purposeReset, tok), nil
}

// liveReset returns the user whose outstanding reset token names.
func (h *Handler) liveReset(ctx context.Context, token string) ([]byte, *store.User, error) {
	hash, err := h.resetHash(token)
	if err != nil {
		return nil, nil, err
	}
	r, err := h.opts.Account.Data.GetPasswordReset(ctx, hash, h.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errResetLink
	}
	if err != nil {
		return nil, nil, err
	}
	u, err := h.users.GetUser(ctx, r.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Status != store.StatusActive) {
		return nil, nil, errResetLink
	}
	return hash, u, err
}

// resetPassword sets the new password of the user whose link token is.
// Errors caused by the input are *inputError (the password policy's, naming
// newPassword) or errResetLink.
func (h *Handler) resetPassword(ctx context.Context, token, newPassword string) error {
	if newPassword == "" {
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{refusal.New("newPassword", "enter a new password")}}
	}
	hash, u, err := h.liveReset(ctx, token)
	if err != nil {
		return err
	}
	pw, err := h.users.HashPassword(newPassword, u)
	if ve := (*identity.ValidationError)(nil); errors.As(err, &ve) {
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{ve.At("newPassword")}}
	}
	if err != nil {
		return err
	}
	_, err = h.users.RecoverPassword(ctx, "user:"+u.ID, hash, u.ID, pw, h.now())
	if errors.Is(err, store.ErrNotFound) {
		return errResetLink // used meanwhile, or the user is gone
	}
	if err != nil {
		return err
	}
	h.log.Info("selfservice: password reset", "id", u.ID)
	if to := u.VerifiedEmail(); to != "" {
		h.background("password_changed_notice", func(ctx context.Context) {
			if err := h.mail(ctx, "password_changed_notice", to, u, mailData{Link: h.baseURL + pathForgot}); err != nil {
				h.log.Error("selfservice: mailing the password change notice", "id", u.ID, "err", err)
			}
		})
	}
	return nil
}

// --- pages ---

// forgotSent is the one answer to every request for a link.
const forgotSent = "If an account has this user name or verified e-mail address, we have sent a link to choose a new password to its address. Check your e-mail, also the spam folder."

func (h *Handler) forgotPage() formPage {
	return formPage{Title: "Forgot your password?", Action: pathForgot, Submit: "Send me a link",
		Intro: []string{"Enter your user name or the e-mail address you confirmed. We send a link to choose a new password to that address; it works for " +
			formatTTL(h.opts.ResetTTL) + "."},
		Fields: []formField{{Name: "account", Label: "User name or e-mail address", Type: "text", Autocomplete: "username", Required: true}},
		Links:  []link{{Href: "/signin", Text: "Back to sign in"}}}
}

func (h *Handler) showForgot(w http.ResponseWriter, r *http.Request) {
	h.renderPage(w, r, http.StatusOK, h.forgotPage(), nil, nil, "")
}

func (h *Handler) submitForgot(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r, pathForgot) {
		return
	}
	account := strings.TrimSpace(r.PostForm.Get("account"))
	values := map[string]string{"account": account}
	if !h.csrfValid(r, r.PostForm.Get("csrf")) {
		h.renderPage(w, r, http.StatusForbidden, h.forgotPage(), values, nil, "The form expired or did not come from this site. Submit it again.")
		return
	}
	if account == "" {
		h.renderPage(w, r, http.StatusUnprocessableEntity, h.forgotPage(), values, []*refusal.FieldError{refusal.New("account", "enter your user name or e-mail address")}, "")
		return
	}
	h.forgot(account)
	http.Redirect(w, r, pathForgot+"/sent", http.StatusSeeOther)
}

func (h *Handler) showForgotSent(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, h.pages.message, messagePage{Title: "Check your e-mail", Text: forgotSent, Link: "/signin", LinkText: "Back to sign in"})
}

func (h *Handler) resetPage(token string) formPage {
	return formPage{Title: "Choose a new password", Action: pathReset, Submit: "Set the new password",
		Intro:  []string{"Choose a new password. Once it is set, you are signed out everywhere and sign in with the new one."},
		Hidden: []hiddenField{{"token", token}},
		Fields: []formField{
			{Name: "newPassword", Label: "New password", Type: "password", Autocomplete: "new-password", Required: true,
				Hint: "Use a long passphrase of several unrelated words. Common or guessable passwords are refused."},
			{Name: "passwordConfirm", Label: "New password again", Type: "password", Autocomplete: "new-password", Required: true},
		}}
}

// linkInvalid answers a reset link that does not work, the same for every
// reason.
func (h *Handler) linkInvalid(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusBadRequest, h.pages.message, messagePage{Title: "Link not valid",
		Text: "This link to choose a new password does not work: it was used already, it expired, or it was not copied whole. Ask for a new one.",
		Link: pathForgot, LinkText: "Ask for a new link"})
}

// showReset is GET /password/reset?token=...: the link from the e-mail. It
// shows the form without using the link.
func (h *Handler) showReset(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	_, _, err := h.liveReset(r.Context(), token)
	if errors.Is(err, errResetLink) {
		h.linkInvalid(w, r)
		return
	}
	if err != nil {
		h.serverError(w, r, "reading a password reset", err)
		return
	}
	h.renderPage(w, r, http.StatusOK, h.resetPage(token), nil, nil, "")
}

func (h *Handler) submitReset(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r, pathForgot) {
		return
	}
	token, pw := r.PostForm.Get("token"), r.PostForm.Get("newPassword")
	page := h.resetPage(token)
	if !h.csrfValid(r, r.PostForm.Get("csrf")) {
		h.renderPage(w, r, http.StatusForbidden, page, nil, nil, "The form expired or did not come from this site. Enter the new password again.")
		return
	}
	if pw != "" && pw != r.PostForm.Get("passwordConfirm") {
		h.renderPage(w, r, http.StatusUnprocessableEntity, page, nil,
			[]*refusal.FieldError{refusal.New("passwordConfirm", "the passwords do not match; type the same password in both fields")}, "")
		return
	}
	err := h.resetPassword(r.Context(), token, pw)
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		h.renderPage(w, r, ie.status, page, nil, ie.fields, "")
		return
	}
	if errors.Is(err, errResetLink) {
		h.linkInvalid(w, r)
		return
	}
	if err != nil {
		h.serverError(w, r, "resetting a password", err)
		return
	}
	http.Redirect(w, r, pathReset+"/done", http.StatusSeeOther)
}

func (h *Handler) showResetDone(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, h.pages.message, messagePage{Title: "Password changed",
		Text: "Your new password is set and you were signed out everywhere. Sign in with the new password.",
		Link: "/signin", LinkText: "Sign in"})
}

// --- JSON API ---

// forgotJSON is POST /api/v1/password/forgot {"account": "..."}: 202, the
// same for every account named, existing or not.
func (h *Handler) forgotJSON(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Account string `json:"account"`
	}
	if !readJSON(w, r, &req, "account") {
		return
	}
	if strings.TrimSpace(req.Account) == "" {
		writeProblem(w, http.StatusUnprocessableEntity, "name the account", refusal.New("account", "enter a user name or an e-mail address"))
		return
	}
	h.forgot(strings.TrimSpace(req.Account))
	writeJSON(w, http.StatusAccepted, struct {
		Detail string `json:"detail"`
	}{forgotSent})
}

// resetJSON is POST /api/v1/password/reset {"token": "...", "newPassword":
// "..."}: 204, or problem details.
func (h *Handler) resetJSON(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token       string `json:"token"`
		NewPassword string `json:"newPassword"`
	}
	if !readJSON(w, r, &req, "token and newPassword") {
		return
	}
	err := h.resetPassword(r.Context(), req.Token, req.NewPassword)
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		writeProblem(w, ie.status, "the new password was not accepted; see errors", ie.fields...)
		return
	}
	if errors.Is(err, errResetLink) {
		writeProblem(w, http.StatusBadRequest, "the reset token is not valid: used already, expired or incomplete; ask for a new link",
			refusal.New("token", "is not a valid reset token"))
		return
	}
	if err != nil {
		h.log.Error("selfservice: resetting a password", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the password could not be changed because of a problem on our side; try again later")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
