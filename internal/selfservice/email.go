package selfservice

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"net/url"
	"strings"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Changing the e-mail address: the new address becomes the account's,
// verified, only when the link mailed to it is followed, and only while the
// account still has the address the change started from (so a link works
// once, and an older link dies with a newer change). The old address is told
// at once. Requests are within the e-mail throttle of the account and of the
// new address.

const (
	purposeEmail = "thingid selfservice change-email v1"
	pathEmail    = "/account/email"
)

// emailClaims is what a change-of-address link vouches for.
type emailClaims struct {
	UserID  string `json:"sub"`
	From    string `json:"from"`
	To      string `json:"email"`
	Expires int64  `json:"exp"`
}

// errTooManyMails: the account or the address was sent enough e-mails lately.
var errTooManyMails = errors.New("too many e-mails")

// requestEmailChange checks the new address and mails the link to it and a
// notice to the old one. Errors caused by the input are *inputError.
func (h *Handler) requestEmailChange(u *store.User, to string) error {
	to = strings.TrimSpace(to)
	a, err := mail.ParseAddress(to)
	switch {
	case to == "":
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{refusal.New("email", "enter the new e-mail address")}}
	case err != nil || a.Name != "" || a.Address != to || len(to) > 254:
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{refusal.New("email", "enter an e-mail address like name@example.org")}}
	case strings.EqualFold(to, u.VerifiedEmail()):
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{refusal.New("email", "this is your confirmed address already")}}
	}
	if !h.allowMail("user:"+u.ID, mailKey(to)) {
		h.mailCount.WithLabelValues("address_change", "throttled").Inc()
		return errTooManyMails
	}
	from := u.PrimaryEmail()
	now := h.now()
	tok := h.sign(purposeEmail, emailClaims{UserID: u.ID, From: from, To: to, Expires: now.Add(h.opts.VerificationTTL).Unix()})
	link := h.baseURL + pathEmail + "/confirm?token=" + url.QueryEscape(tok)
	h.background("address_change", func(ctx context.Context) {
		if err := h.mail(ctx, "address_change", to, u, mailData{Link: link, Within: h.opts.VerificationTTL}); err != nil {
			h.log.Error("selfservice: mailing an address change link", "id", u.ID, "err", err)
		}
		if from == "" {
			return
		}
		if err := h.mail(ctx, "address_change_notice", from, u, mailData{To: to, Link: h.baseURL + "/account/password"}); err != nil {
			h.log.Error("selfservice: mailing an address change notice", "id", u.ID, "err", err)
		}
	})
	h.log.Info("selfservice: address change asked", "id", u.ID)
	return nil
}

func (h *Handler) emailPage(u *store.User, notice string) formPage {
	current := u.PrimaryEmail()
	switch {
	case current == "":
		current = "Your account has no e-mail address yet."
	case u.EmailVerified:
		current = "Your e-mail address is " + current + " (confirmed)."
	default:
		current = "Your e-mail address is " + current + " (not confirmed)."
	}
	return formPage{Title: "Change your e-mail address", Notice: notice, Action: pathEmail, Submit: "Send the confirmation link",
		Intro: []string{current, "We send a link to the new address; it becomes your address when you open the link within " +
			formatTTL(h.opts.VerificationTTL) + ". We also tell your current address."},
		Fields: []formField{{Name: "email", Label: "New e-mail address", Type: "email", Autocomplete: "email", Required: true}},
		Links:  []link{{Href: "/account", Text: "Back to your account"}}}
}

func (h *Handler) showEmail(w http.ResponseWriter, r *http.Request, u *store.User) {
	notice := ""
	if r.URL.Query().Has("sent") {
		notice = "We have sent a link to the new address. Open it to make it your address."
	}
	h.renderPage(w, r, http.StatusOK, h.emailPage(u, notice), nil, nil, "")
}

func (h *Handler) submitEmail(w http.ResponseWriter, r *http.Request, u *store.User) {
	to := strings.TrimSpace(r.PostForm.Get("email"))
	err := h.requestEmailChange(u, to)
	values := map[string]string{"email": to}
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		h.renderPage(w, r, ie.status, h.emailPage(u, ""), values, ie.fields, "")
		return
	}
	if errors.Is(err, errTooManyMails) {
		h.renderPage(w, r, http.StatusTooManyRequests, h.emailPage(u, ""), values, nil, "We have sent enough e-mails for this account or address lately. Try again in an hour.")
		return
	}
	http.Redirect(w, r, pathEmail+"?sent", http.StatusSeeOther)
}

// emailJSON is POST /api/v1/account/email {"email": "..."}: 202 once the
// link is on its way, or problem details.
func (h *Handler) emailJSON(w http.ResponseWriter, r *http.Request, u *store.User) {
	var req struct {
		Email string `json:"email"`
	}
	if !readJSON(w, r, &req, "email") {
		return
	}
	err := h.requestEmailChange(u, req.Email)
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		writeProblem(w, ie.status, "the address was not accepted; see errors", ie.fields...)
		return
	}
	if errors.Is(err, errTooManyMails) {
		w.Header().Set("Retry-After", "3600")
		writeProblem(w, http.StatusTooManyRequests, "enough e-mails were sent for this account or address lately; try again in an hour")
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Detail string `json:"detail"`
	}{"a link was sent to the new address; it becomes the account's address when the link is opened"})
}

// confirmEmail is GET /account/email/confirm?token=...: the link from the
// e-mail to the new address. It needs no session: the link proves both.
func (h *Handler) confirmEmail(w http.ResponseWriter, r *http.Request) {
	var c emailClaims
	err := h.open(purposeEmail, r.URL.Query().Get("token"), &c)
	back := messagePage{Link: "/account", LinkText: "Your account"}
	switch {
	case err != nil || c.UserID == "" || c.To == "":
		back.Title, back.Text = "Link not valid", "This link is not valid. Copy the whole link from the e-mail into the address bar."
		h.render(w, r, http.StatusBadRequest, h.pages.message, back)
		return
	case h.now().Unix() >= c.Expires:
		back.Title, back.Text = "Link expired", "This link has expired. Ask for a new one on your account's e-mail page."
		back.Link = pathEmail
		h.render(w, r, http.StatusBadRequest, h.pages.message, back)
		return
	}
	_, err = h.users.ChangeEmail(r.Context(), "user:"+c.UserID, c.UserID, c.From, c.To)
	switch {
	case err == nil:
		h.log.Info("selfservice: e-mail address changed", "id", c.UserID)
		back.Title, back.Text = "E-mail address changed", "Your e-mail address is now "+c.To+", confirmed."
		h.render(w, r, http.StatusOK, h.pages.message, back)
	case errors.Is(err, identity.ErrEmailMoved):
		back.Title, back.Text = "Link out of date", "The e-mail address of this account has changed since this link was sent, so it no longer works."
		h.render(w, r, http.StatusConflict, h.pages.message, back)
	case errors.Is(err, store.ErrEmailTaken):
		back.Title, back.Text = "Address already confirmed", "This e-mail address has been confirmed for another account, so it cannot be yours. Use another address."
		h.render(w, r, http.StatusConflict, h.pages.message, back)
	case errors.Is(err, store.ErrNotFound):
		back.Title, back.Text = "Account not found", "The account this link was made for no longer exists."
		h.render(w, r, http.StatusNotFound, h.pages.message, back)
	default:
		h.serverError(w, r, "changing an e-mail address", err)
	}
}
