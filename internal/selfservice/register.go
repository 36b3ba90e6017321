package selfservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// maxBody bounds form and JSON bodies: four fields of at most 256 characters fit
// many times over.
const maxBody = 16 << 10

// registration is what a new user submits, through the form or the API.
type registration struct {
	UserName    string `json:"userName"`
	Email       string `json:"email"`
	DisplayName string `json:"displayName"`
	Password    string `json:"password"`
}

// inputError is a registration refused because of what the user entered:
// a refusal per input field, named as in the form and the JSON body, which
// pages translate while the API answers in English.
type inputError struct {
	status int
	fields []*refusal.FieldError
}

func (e *inputError) Error() string {
	parts := make([]string, len(e.fields))
	for i, f := range e.fields {
		parts[i] = f.Error()
	}
	return strings.Join(parts, "; ")
}

// identityFields maps identity.ValidationError fields to our input names.
var identityFields = map[string]string{
	"userName":    "userName",
	"emails":      "email",
	"displayName": "displayName",
	"password":    "password",
}

// register creates the user and sends the verification e-mail. Errors caused
// by the input are *inputError; anything else is the server's fault.
func (h *Handler) register(ctx context.Context, reg registration) (*store.User, error) {
	var missing []*refusal.FieldError
	if strings.TrimSpace(reg.UserName) == "" {
		missing = append(missing, refusal.New("userName", "enter a user name"))
	}
	if strings.TrimSpace(reg.Email) == "" {
		missing = append(missing, refusal.New("email", "enter your e-mail address"))
	}
	// The identity service stores a user without a password when given "".
	if reg.Password == "" {
		missing = append(missing, refusal.New("password", "enter a password"))
	}
	if len(missing) > 0 {
		return nil, &inputError{http.StatusUnprocessableEntity, missing}
	}
	// An address is a user's only once verified, and one that somebody has
	// verified cannot be claimed by a new account. New accounts never start
	// verified: only the link sent to the address verifies it (verify.go).
	switch _, err := h.users.GetUserByVerifiedEmail(ctx, reg.Email); {
	case err == nil:
		return nil, &inputError{http.StatusConflict, []*refusal.FieldError{refusal.New("email", emailUnavailable)}}
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("looking up the e-mail address: %w", err)
	}
	u := &store.User{
		UserName:    reg.UserName,
		DisplayName: strings.TrimSpace(reg.DisplayName),
		Emails:      []store.MultiValue{{Value: strings.TrimSpace(reg.Email), Primary: true}},
	}
	u, err := h.users.CreateUser(ctx, h.opts.Actor, u, reg.Password)
	var ve *identity.ValidationError
	switch {
	case errors.As(err, &ve):
		field, ok := identityFields[ve.Field]
		if !ok {
			field = ve.Field
		}
		return nil, &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{ve.At(field)}}
	case errors.Is(err, store.ErrEmailTaken):
		return nil, &inputError{http.StatusConflict, []*refusal.FieldError{refusal.New("email", emailUnavailable)}}
	case errors.Is(err, store.ErrConflict):
		// User names are unique case-insensitively in the store.
		return nil, &inputError{http.StatusConflict, []*refusal.FieldError{refusal.New("userName", "this user name is taken; choose another one")}}
	case err != nil:
		return nil, fmt.Errorf("creating user: %w", err)
	}
	h.log.Info("selfservice: user registered", "id", u.ID, "userName", u.UserName)
	if h.opts.EmailVerification {
		// The user exists now: send even if the client has gone away.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := h.sendVerification(ctx, u); err != nil {
			h.log.Error("selfservice: sending the verification e-mail failed", "id", u.ID, "err", err)
		}
	}
	return u, nil
}

// emailUnavailable is the one answer for an address someone has verified. It
// says no more than the user-name check already must (that a name or
// address is in use); the per-address rate limit bounds how fast anyone can
// probe, and the address's holder is not named.
const emailUnavailable = "this e-mail address cannot be used for a new account; use another address, or sign in to the account that has it"

func (h *Handler) sendVerification(ctx context.Context, u *store.User) error {
	email := u.Emails[0].Value
	tok := h.verifyToken(verifyClaims{UserID: u.ID, Email: email, Expires: time.Now().Add(h.opts.VerificationTTL).Unix()})
	link := h.baseURL + "/register/verify?token=" + url.QueryEscape(tok)
	return h.mail(ctx, "verification", email, u, mailData{Link: link, Within: h.opts.VerificationTTL})
}

func (h *Handler) mailFrom() string {
	if h.opts.SMTP.From != "" {
		return h.opts.SMTP.From
	}
	u, _ := url.Parse(h.baseURL) // checked by Validate
	return "thingid <no-reply@" + u.Hostname() + ">"
}

// formatTTL says a duration the way people do: "24 hours", "30 minutes".
func formatTTL(d time.Duration) string {
	switch {
	case d == time.Hour:
		return "1 hour"
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}
