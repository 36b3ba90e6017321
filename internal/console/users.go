package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

type userRow struct {
	Link, UserName, DisplayName, Email, Status string
}

type usersPage struct {
	base
	Query, Status        string
	Error                *refusal.FieldError
	Rows                 []userRow
	Total                int
	Searched             bool
	PrevLink, NextLink   string
	FirstShown, LastShow int
	// The create form, again after a refusal.
	New struct {
		UserName, DisplayName, Email string
		Error                        error
	}
}

// userFilter selects users whose user name, display name or e-mail address
// starts with q (the store compiles it to SQL as it does SCIM's sw), and
// status.
func userFilter(q, status string) store.Expr {
	var text store.Expr
	if q != "" {
		sw := func(f string) store.Expr { return store.Compare{Field: f, Op: store.OpSw, Value: q} }
		text = store.Or{Left: sw("userName"), Right: store.Or{Left: sw("displayName"), Right: sw("emails")}}
	}
	return and(text, eq("status", status))
}

// showUsers is GET /admin/users: search and the create form.
func (c *Console) showUsers(w http.ResponseWriter, r *http.Request, s staff) {
	c.renderUsers(w, r, s, usersPage{base: c.base(w, r, s)}, http.StatusOK)
}

func (c *Console) renderUsers(w http.ResponseWriter, r *http.Request, s staff, p usersPage, status int) {
	v := r.URL.Query()
	p.Query, p.Status = strings.TrimSpace(v.Get("q")), v.Get("status")
	page, err := pageParam(v)
	switch {
	case errors.As(err, &p.Error):
	case len(p.Query) > maxSearchText:
		p.Error = refused("q", "at most %d characters", maxSearchText)
	case p.Status != "" && p.Status != string(store.StatusActive) && p.Status != string(store.StatusDisabled):
		p.Error = refused("status", "choose active or disabled")
	}
	if p.Error != nil {
		c.kit.Render(w, r, http.StatusBadRequest, c.pages.users, p)
		return
	}
	p.Searched = p.Query != "" || p.Status != ""
	if p.Searched {
		users, total, err := c.opts.Identities.ListUsers(r.Context(), store.Query{Filter: userFilter(p.Query, p.Status),
			SortBy: "userName", Offset: (page - 1) * pageSize, Limit: pageSize})
		if qe, ok := errors.AsType[*store.QueryError](err); ok {
			// Text no column holds (a NUL, broken UTF-8), refused by the store.
			p.Error = qe.At("q")
			c.kit.Render(w, r, http.StatusBadRequest, c.pages.users, p)
			return
		}
		if err != nil {
			c.pageError(w, r, err)
			return
		}
		p.Total = total
		for _, u := range users {
			p.Rows = append(p.Rows, userRow{Link: pathOf("users", u.ID), UserName: u.UserName, DisplayName: u.DisplayName,
				Email: u.PrimaryEmail(), Status: string(u.Status)})
		}
		q := url.Values{}
		if p.Query != "" {
			q.Set("q", p.Query)
		}
		if p.Status != "" {
			q.Set("status", p.Status)
		}
		p.PrevLink, p.NextLink, p.FirstShown, p.LastShow = pager(Path+"/users", q, page, len(users), total)
	}
	c.kit.Render(w, r, status, c.pages.users, p)
}

// submitCreateUser is POST /admin/users: a user with a one-time password,
// which the user must change at the first sign-in.
func (c *Console) submitCreateUser(w http.ResponseWriter, r *http.Request, s staff) {
	f := r.PostForm
	u := &store.User{UserName: strings.TrimSpace(f.Get("userName")), DisplayName: strings.TrimSpace(f.Get("displayName")),
		Status: store.StatusActive, MustChangePassword: f.Get("password") != ""}
	if e := strings.TrimSpace(f.Get("email")); e != "" {
		u.Emails = []store.MultiValue{{Value: e, Primary: true}}
	}
	created, err := c.opts.Identities.CreateUser(r.Context(), s.actor(), u, f.Get("password"))
	if err == nil {
		done(w, r, pathOf("users", created.ID), "created")
		return
	}
	p := usersPage{base: c.base(w, r, s)}
	p.New.UserName, p.New.DisplayName, p.New.Email = f.Get("userName"), f.Get("displayName"), f.Get("email")
	switch {
	case errors.Is(err, store.ErrConflict), errors.As(err, new(*identity.ValidationError)):
		p.New.Error = err // a store.ConflictError or identity.ValidationError: translated on the page
	default:
		c.pageError(w, r, err)
		return
	}
	c.renderUsers(w, r, s, p, http.StatusBadRequest)
}

type userPage struct {
	base
	U           *store.User
	Email       string
	Groups      []string
	Things      []thingRow
	Grants      []grantRow
	Audit       []auditRow
	AuditLink   string
	GrantAction string
}

// showUser is GET /admin/users/{id}: the user, their things and grants.
func (c *Console) showUser(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	u, err := c.opts.Identities.GetUser(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, http.StatusNotFound, "No such user", "There is no user with this ID. Search for them on the users page.")
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p := userPage{base: c.base(w, r, s), U: u, Email: u.PrimaryEmail(), GrantAction: pathOf("users", u.ID) + "/grants/revoke"}
	ref := store.Ref{Kind: store.KindUser, ID: u.ID}
	rels, err := c.opts.Identities.ListRelationships(ctx, store.RelFilter{From: &ref})
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	for _, rel := range rels {
		switch {
		case rel.Kind == store.RelOwner && rel.To.Kind == store.KindThing:
			row := thingRow{Link: pathOf("things", rel.To.ID), DisplayName: rel.To.ID}
			if t, err := c.opts.Identities.GetThing(ctx, rel.To.ID); err == nil {
				row = thingRow{Link: row.Link, DisplayName: t.DisplayName, SerialNumber: t.SerialNumber, Model: t.Model,
					Manufacturer: t.Manufacturer, Status: string(t.Status)}
			}
			p.Things = append(p.Things, row)
		case rel.Kind == store.RelMember && rel.To.Kind == store.KindGroup:
			if g, err := c.opts.Identities.GetGroup(ctx, rel.To.ID); err == nil {
				p.Groups = append(p.Groups, g.DisplayName)
			}
		}
	}
	gs, err := c.opts.Store.ListGrants(ctx, store.GrantFilter{UserID: u.ID, IncludeRevoked: true})
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p.Grants, _ = c.grantRows(r, gs, func(g *store.Grant) bool { return g.UserID == u.ID })
	f := audit.Filter{Subject: u.ID, SubjectKind: store.KindUser}
	if p.Audit, err = c.trail(r, s, f); err != nil {
		c.pageError(w, r, err)
		return
	}
	p.AuditLink = Path + "/audit?" + f.Values().Encode()
	c.kit.Render(w, r, http.StatusOK, c.pages.user, p)
}

// submitUserStatus is POST .../disable and .../enable. Disabling ends the
// user's sessions (authn refuses a disabled user's session).
func (c *Console) submitUserStatus(to store.Status) handler {
	return func(w http.ResponseWriter, r *http.Request, s staff) {
		id := r.PathValue("id")
		if id == s.user.ID && to == store.StatusDisabled {
			c.message(w, r, http.StatusBadRequest, "Not disabled", "You cannot disable yourself: ask another administrator.")
			return
		}
		_, err := c.opts.Identities.UpdateUser(r.Context(), s.actor(), id, 0, func(u *store.User) error {
			u.Status = to
			return nil
		})
		if c.changeFailed(w, r, err) {
			return
		}
		done(w, r, pathOf("users", id), map[store.Status]string{store.StatusActive: "enabled", store.StatusDisabled: "disabled"}[to])
	}
}

// submitEndSessions is POST .../sessions/end.
func (c *Console) submitEndSessions(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	if _, err := c.opts.Identities.GetUser(r.Context(), id); c.changeFailed(w, r, err) {
		return
	}
	if c.changeFailed(w, r, c.opts.Sessions.EndUserSessions(r.Context(), s.actor(), id)) {
		return
	}
	done(w, r, pathOf("users", id), "sessions")
}

// submitForceReset is POST .../password/reset: the user's password opens
// nothing but the page to choose a new one (as a one-time password does),
// every session ends, and a link to choose it is mailed to the user's
// verified address when there is one (the forgot-password mail).
func (c *Console) submitForceReset(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	if id == s.user.ID {
		c.message(w, r, http.StatusBadRequest, "Not reset", "Change your own password on your account page.")
		return
	}
	_, err := c.opts.Identities.UpdateUser(r.Context(), s.actor(), id, 0, func(u *store.User) error {
		u.MustChangePassword = true
		return nil
	})
	if c.changeFailed(w, r, err) {
		return
	}
	if c.changeFailed(w, r, c.opts.Sessions.EndUserSessions(r.Context(), s.actor(), id)) {
		return
	}
	notice := "resetNoMail"
	if c.opts.Resets != nil {
		switch err := c.opts.Resets.SendPasswordReset(r.Context(), s.actor(), id); {
		case err == nil:
			notice = "reset"
		case !errors.Is(err, ErrNoVerifiedAddress):
			c.log.Error("console: mailing a password reset", "user", id, "err", err)
		}
	}
	done(w, r, pathOf("users", id), notice)
}

// submitRevokeUserGrant is POST .../grants/revoke with the grant's id.
func (c *Console) submitRevokeUserGrant(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	if c.changeFailed(w, r, c.opts.Grants.RevokeUserGrant(r.Context(), s.actor(), id, r.PostForm.Get("grant"))) {
		return
	}
	done(w, r, pathOf("users", id), "grant")
}
