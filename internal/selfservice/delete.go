package selfservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Deleting one's account, after entering the password again:
//   - it is refused for the last active administrator, and for the only
//     guardian of a household with other members (a household keeps a
//     guardian: make another member guardian first, as the household pages
//     say); a household whose only member the user is goes with the account;
//   - every thing the user owns is unlinked (the owner relationship removed)
//     and the user's grants for it revoked, by the authorization server, as
//     "My devices" does; then every other grant of the user is revoked, and
//     every UMA share the user gave, with the RPTs resting on it: tokens die
//     at once everywhere (grant.revoke);
//   - then the user is deleted through the identity service (audit record
//     user.delete, the event): relationships, household memberships and
//     placements, sessions and password resets go with it. What others
//     shared with the user, UMA resources registered for the user and the
//     audit log stay: ids are never reused, so they identify nobody.

const (
	pathDelete  = "/account/delete"
	pathDeleted = "/account/deleted"
)

// blocked is a deletion refused because of the account's place in the
// platform; Reason says what to do.
type blocked struct{ Reason string }

func (e *blocked) Error() string { return e.Reason }

// blockers returns why u may not delete the account now (nil: nothing), and
// the households that go with it.
func (h *Handler) blockers(ctx context.Context, u *store.User) (reasons []string, alone []string, err error) {
	d := h.opts.Account.Data
	admins, _, err := d.ListGroups(ctx, store.Query{Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: authn.AdminGroup}, Limit: 1})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the administrators: %w", err)
	}
	if len(admins) == 1 {
		me, others := false, 0
		for _, m := range admins[0].Members {
			if m.Kind != store.KindUser {
				continue
			}
			if m.ID == u.ID {
				me = true
				continue
			}
			if o, err := h.users.GetUser(ctx, m.ID); err == nil && o.Status == store.StatusActive {
				others++
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, nil, err
			}
		}
		if me && others == 0 {
			reasons = append(reasons, "You are the last administrator of this platform. Make another user an administrator first.")
		}
	}
	memberships, err := d.ListMemberships(ctx, u.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the households: %w", err)
	}
	for _, m := range memberships {
		if m.Role != "guardian" {
			continue
		}
		members, err := d.ListHouseholdMembers(ctx, m.HouseholdID)
		if err != nil {
			return nil, nil, fmt.Errorf("reading a household: %w", err)
		}
		guardians := 0
		for _, o := range members {
			if o.Role == "guardian" {
				guardians++
			}
		}
		switch {
		case len(members) == 1:
			alone = append(alone, m.HouseholdID)
		case guardians == 1:
			name := m.HouseholdID
			if g, err := d.GetGroup(ctx, m.HouseholdID); err == nil {
				name = g.DisplayName
			}
			reasons = append(reasons, fmt.Sprintf("You are the only guardian of the household %q. Make another member guardian, or remove the other members, first.", name))
		}
	}
	return reasons, alone, nil
}

// deleteAccount deletes u as described above; a *blocked says why not.
func (h *Handler) deleteAccount(ctx context.Context, u *store.User) error {
	reasons, alone, err := h.blockers(ctx, u)
	if err != nil {
		return err
	}
	if len(reasons) > 0 {
		return &blocked{strings.Join(reasons, " ")}
	}
	actor := "user:" + u.ID
	d, rev := h.opts.Account.Data, h.opts.Account.Revoker
	me := store.Ref{Kind: store.KindUser, ID: u.ID}
	owned, err := d.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, From: &me})
	if err != nil {
		return err
	}
	for _, r := range owned {
		if err := rev.Unlink(ctx, actor, u.ID, r.To.ID); err != nil {
			return fmt.Errorf("unlinking thing %s: %w", r.To.ID, err)
		}
	}
	shares, err := d.ListUMAShares(ctx, store.UMAShareFilter{OwnerID: u.ID})
	if err != nil {
		return err
	}
	for _, s := range shares {
		if err := rev.RevokeShare(ctx, actor, u.ID, s.ID); err != nil {
			return fmt.Errorf("revoking share %s: %w", s.ID, err)
		}
	}
	grants, err := d.ListGrants(ctx, store.GrantFilter{UserID: u.ID})
	if err != nil {
		return err
	}
	for _, g := range grants {
		if err := rev.RevokeUserGrant(ctx, actor, u.ID, g.ID); err != nil {
			return fmt.Errorf("revoking grant %s: %w", g.ID, err)
		}
	}
	for _, id := range alone {
		if err := h.users.DeleteGroup(ctx, actor, id, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("deleting household %s: %w", id, err)
		}
	}
	if err := h.users.DeleteUser(ctx, actor, u.ID, 0); err != nil {
		return err
	}
	h.log.Info("selfservice: account deleted", "id", u.ID, "things", len(owned), "grants", len(grants), "shares", len(shares))
	return nil
}

// reauthenticate checks the password given to confirm, as a *inputError
// naming the field password, with Retry-After set when the account must wait.
func (h *Handler) reauthenticate(w http.ResponseWriter, r *http.Request, u *store.User, pw string) error {
	if pw == "" {
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{refusal.New("password", "enter your password to confirm")}}
	}
	wait, err := h.opts.Account.Sessions.Reauthenticate(r, u, pw)
	if wait > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int((wait+time.Second-1)/time.Second)))
	}
	switch {
	case errors.Is(err, authn.ErrTooManyAttempts):
		return &inputError{http.StatusTooManyRequests, []*refusal.FieldError{refusal.New("password", "too many wrong passwords; wait a while before you try again")}}
	case errors.Is(err, authn.ErrWrongPassword):
		return &inputError{http.StatusUnprocessableEntity, []*refusal.FieldError{refusal.New("password", "the password is wrong")}}
	}
	return err
}

func (h *Handler) deletePage(ctx context.Context, u *store.User) (formPage, error) {
	reasons, alone, err := h.blockers(ctx, u)
	if err != nil {
		return formPage{}, err
	}
	p := formPage{Title: "Delete your account",
		Intro: []string{"Deleting your account " + u.UserName + " cannot be undone. When you delete it:"},
		List: []string{
			"every device linked to you is unlinked from you, and the apps and devices acting for you lose their access at once;",
			"everything you share with others is no longer shared;",
			"you leave your households; a household with no other member is deleted;",
			"you are signed out everywhere, and your profile is deleted.",
		},
		Links: []link{{Href: pathData, Text: "Download your data first"}, {Href: "/account", Text: "Back to your account"}}}
	if len(alone) > 0 {
		p.List[2] = fmt.Sprintf("you leave your households; %d household(s) where you are the only member are deleted;", len(alone))
	}
	if len(reasons) > 0 {
		p.Intro = append(p.Intro[:0], "Your account cannot be deleted now.")
		p.List = reasons
		return p, nil
	}
	p.Action, p.Submit = pathDelete, "Delete my account"
	p.Fields = []formField{{Name: "password", Label: "Your password, to confirm", Type: "password", Autocomplete: "current-password", Required: true}}
	return p, nil
}

func (h *Handler) showDelete(w http.ResponseWriter, r *http.Request, u *store.User) {
	p, err := h.deletePage(r.Context(), u)
	if err != nil {
		h.serverError(w, r, "showing the deletion page", err)
		return
	}
	h.renderPage(w, r, http.StatusOK, p, nil, nil, "")
}

func (h *Handler) submitDelete(w http.ResponseWriter, r *http.Request, u *store.User) {
	p, err := h.deletePage(r.Context(), u)
	if err == nil {
		err = h.reauthenticate(w, r, u, r.PostForm.Get("password"))
	}
	if err == nil {
		err = h.deleteAccount(r.Context(), u)
	}
	var ie *inputError
	var ref *blocked
	switch {
	case errors.As(err, &ie):
		h.renderPage(w, r, ie.status, p, nil, ie.fields, "")
	case errors.As(err, &ref):
		h.renderPage(w, r, http.StatusConflict, p, nil, nil, ref.Reason)
	case err != nil:
		h.serverError(w, r, "deleting an account", err)
	default:
		http.Redirect(w, r, pathDeleted, http.StatusSeeOther)
	}
}

func (h *Handler) showDeleted(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, h.pages.message, messagePage{Title: "Account deleted",
		Text: "Your account has been deleted and you have been signed out everywhere.", Link: "/", LinkText: "Home"})
}

// deleteJSON is DELETE /api/v1/account {"password": "..."}: 204, or problem
// details (409 with the reason when the account cannot be deleted now).
func (h *Handler) deleteJSON(w http.ResponseWriter, r *http.Request, u *store.User) {
	var req struct {
		Password string `json:"password"`
	}
	if !readJSON(w, r, &req, "password") {
		return
	}
	err := h.reauthenticate(w, r, u, req.Password)
	if err == nil {
		err = h.deleteAccount(r.Context(), u)
	}
	var ie *inputError
	var ref *blocked
	switch {
	case errors.As(err, &ie):
		writeProblem(w, ie.status, "the account was not deleted; see errors", ie.fields...)
	case errors.As(err, &ref):
		writeProblem(w, http.StatusConflict, ref.Reason)
	case err != nil:
		h.log.Error("selfservice: deleting an account", "id", u.ID, "err", err)
		writeProblem(w, http.StatusInternalServerError, "the account could not be deleted because of a problem on our side; try again later")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
