package selfservice

import (
	"errors"
	"net/http"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

var (
	errEmailChanged    = errors.New("e-mail address changed since the link was sent")
	errAlreadyVerified = errors.New("e-mail address already verified")
)

// verifyEmail is GET /register/verify?token=...: the link from the verification
// e-mail. It marks the address verified if the account still has it.
func (h *Handler) verifyEmail(w http.ResponseWriter, r *http.Request) {
	c, err := h.parseVerifyToken(r.URL.Query().Get("token"), time.Now())
	if errors.Is(err, errTokenExpired) {
		h.render(w, r, http.StatusBadRequest, h.pages.message, messagePage{Title: "Link expired",
			Text: "This verification link has expired. Ask the support team of this site for a new one."})
		return
	}
	if err != nil {
		h.render(w, r, http.StatusBadRequest, h.pages.message, messagePage{Title: "Link not valid",
			Text: "This verification link is not valid. Copy the whole link from the e-mail into the address bar."})
		return
	}
	_, err = h.users.UpdateUser(r.Context(), h.opts.Actor, c.UserID, 0, func(u *store.User) error {
		// EmailVerified is about the primary address (identity.PrimaryEmail):
		// a link for an address that is now only a secondary one must not
		// vouch for the new primary.
		switch {
		case identity.PrimaryEmail(u) != c.Email:
			return errEmailChanged
		case u.EmailVerified:
			return errAlreadyVerified // nothing to write, nothing to audit
		}
		u.EmailVerified = true
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errAlreadyVerified):
		h.log.Info("selfservice: e-mail address verified", "id", c.UserID)
		h.render(w, r, http.StatusOK, h.pages.message, messagePage{Title: "E-mail address verified",
			Text: "Thank you. Your e-mail address " + c.Email + " is now confirmed."})
	case errors.Is(err, store.ErrNotFound):
		h.render(w, r, http.StatusNotFound, h.pages.message, messagePage{Title: "Account not found",
			Text: "The account this link was made for no longer exists."})
	case errors.Is(err, store.ErrEmailTaken):
		// Another account verified the address first; this one keeps it
		// unverified, which identifies nobody.
		h.render(w, r, http.StatusConflict, h.pages.message, messagePage{Title: "Address already confirmed",
			Text: "This e-mail address has been confirmed for another account, so it cannot be confirmed for this one. Use another address."})
	case errors.Is(err, errEmailChanged):
		h.render(w, r, http.StatusConflict, h.pages.message, messagePage{Title: "Link out of date",
			Text: "The e-mail address of this account has changed since the link was sent. Use the link sent to the new address."})
	default:
		h.log.Error("selfservice: verifying e-mail", "id", c.UserID, "err", err)
		h.render(w, r, http.StatusInternalServerError, h.pages.message, messagePage{Title: "Something went wrong",
			Text: "Your address could not be confirmed because of a problem on our side. Open the link again later."})
	}
}
