package uma

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// What owners decide: sharing their resources, revoking, approving and
// denying requests, and what requesting parties see shared with them. The
// functions here are the one implementation; the JSON API under /api/v1/uma
// (this file) and the pages under /account (pages.go) call them.
//
// The JSON API: signed-in users (session cookie), cross-site requests
// refused as on every /api/v1 JSON endpoint. Errors are RFC 9457 problem
// details naming the field.

func (s *Server) registerSharing(mux routes.Mux) {
	cop := ui.CrossOrigin(s.issuer, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		problem.Write(w, http.StatusForbidden, "", "cross-origin request refused: call this API from this site or without a browser")
	}))
	api := func(h func(http.ResponseWriter, *http.Request, *store.User)) http.Handler {
		return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, err := s.opts.Sessions.User(r)
			if err != nil {
				problem.Write(w, http.StatusUnauthorized, "", "sign in first: POST /api/v1/signin, then send the session cookie")
				return
			}
			h(w, r, u)
		}))
	}
	mux.Handle("GET /api/v1/uma/resources", api(s.apiResources))
	mux.Handle("GET /api/v1/uma/shares", api(s.apiShares))
	mux.Handle("POST /api/v1/uma/shares", api(s.apiCreateShare))
	mux.Handle("DELETE /api/v1/uma/shares/{id}", api(s.apiRevokeShare))
	mux.Handle("PUT /api/v1/uma/shares/{id}/conditions", api(s.apiSetConditions))
	mux.Handle("GET /api/v1/uma/requests", api(s.apiRequests))
	mux.Handle("POST /api/v1/uma/requests/{id}/approve", api(s.apiApprove))
	mux.Handle("POST /api/v1/uma/requests/{id}/deny", api(s.apiDeny))
	mux.Handle("GET /api/v1/uma/shared-with-me", api(s.apiSharedWithMe))
}

// resourceView is a resource as the owners' API shows it.
type resourceView struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Type        string   `json:"type,omitempty"`
	Description string   `json:"description,omitempty"`
	IconURI     string   `json:"iconUri,omitempty"`
	Scopes      []string `json:"resourceScopes"`
	ServerID    string   `json:"resourceServer,omitempty"`
	Owner       string   `json:"owner,omitempty"`
}

func viewResource(r *store.UMAResource) resourceView {
	return resourceView{ID: r.ID, Name: r.Name, Type: r.Type, Description: r.Description, IconURI: r.IconURI, Scopes: nonNil(r.Scopes), ServerID: r.ClientID}
}

type shareView struct {
	ID          string      `json:"id"`
	ResourceID  string      `json:"resourceId"`
	Grantee     store.Ref   `json:"grantee"`
	GranteeName string      `json:"granteeName,omitempty"`
	Scopes      []string    `json:"scopes"`
	ExpiresAt   *time.Time  `json:"expiresAt,omitempty"`
	Conditions  *Conditions `json:"conditions,omitempty"`
	// When is the conditions in words ("from 07:00 to 20:00 on school days
	// (Europe/Berlin)"), "always" without any.
	When    string    `json:"when"`
	Created time.Time `json:"created"`
	// compiled are the conditions When describes, nil for none.
	compiled *policy.Conditions
}

// whenIn is When in the language of tr (the pages').
func (v shareView) whenIn(tr policy.Translate) string {
	if v.compiled == nil {
		return tr(v.When)
	}
	return v.compiled.DescribeIn(tr)
}

func (s *Server) viewShare(ctx context.Context, sh *store.UMAShare) shareView {
	v := shareView{ID: sh.ID, ResourceID: sh.ResourceID, Grantee: sh.Grantee, Scopes: nonNil(sh.Scopes), Created: sh.Created, When: "always"}
	if c, compiled, err := conditionsOf(sh); err != nil {
		s.log.Error("uma: a share's stored conditions", "share", sh.ID, "err", err)
		v.When = "never (its conditions cannot be read)"
	} else if c != nil {
		v.Conditions, v.When, v.compiled = c, compiled.Describe(), compiled
	}
	if !sh.ExpiresAt.IsZero() {
		t := sh.ExpiresAt
		v.ExpiresAt = &t
	}
	switch sh.Grantee.Kind {
	case store.KindUser:
		if u, err := s.opts.Users.GetUser(ctx, sh.Grantee.ID); err == nil {
			v.GranteeName = u.UserName
		}
	case store.KindGroup:
		if g, err := s.st.GetGroup(ctx, sh.Grantee.ID); err == nil {
			v.GranteeName = g.DisplayName
		}
	}
	return v
}

func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *refusal.FieldError
	if errors.As(err, &fe) {
		problem.Write(w, http.StatusBadRequest, fe.Field, fe.Error())
		return
	}
	var pe *problemError
	if errors.As(err, &pe) {
		problem.Write(w, pe.status, pe.field, pe.detail)
		return
	}
	s.log.Error("uma: owners' API", "path", r.URL.Path, "err", err)
	problem.Write(w, http.StatusInternalServerError, "", "internal error")
}

type problemError struct {
	status        int
	field, detail string
}

func (e *problemError) Error() string { return e.detail }

func refuse(status int, field, detail string) error { return &problemError{status, field, detail} }

// ownedResource is one of the owner's resources with who has it.
type ownedResource struct {
	resourceView
	Shares []shareView `json:"shares"`
}

// resourcesOf returns what owner owns (registered resources and owned
// things), each with its shares.
func (s *Server) resourcesOf(ctx context.Context, owner string) ([]ownedResource, error) {
	rs, err := s.ownedResources(ctx, owner)
	if err != nil {
		return nil, err
	}
	out := []ownedResource{}
	for _, x := range rs {
		shares, err := s.st.ListUMAShares(ctx, store.UMAShareFilter{ResourceID: x.ID, OwnerID: owner})
		if err != nil {
			return nil, err
		}
		e := ownedResource{resourceView: viewResource(x), Shares: []shareView{}}
		for _, sh := range shares {
			e.Shares = append(e.Shares, s.viewShare(ctx, sh))
		}
		out = append(out, e)
	}
	return out, nil
}

// apiResources is GET /api/v1/uma/resources: what the user owns (registered
// resources and owned things) with who has access.
func (s *Server) apiResources(w http.ResponseWriter, r *http.Request, u *store.User) {
	out, err := s.resourcesOf(r.Context(), u.ID)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"resources": out})
}

// apiShares is GET /api/v1/uma/shares: who has what of the user's resources.
func (s *Server) apiShares(w http.ResponseWriter, r *http.Request, u *store.User) {
	shares, err := s.st.ListUMAShares(r.Context(), store.UMAShareFilter{OwnerID: u.ID})
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := []shareView{}
	for _, sh := range shares {
		out = append(out, s.viewShare(r.Context(), sh))
	}
	writeJSON(w, http.StatusOK, map[string]any{"shares": out})
}

// ShareRequest is the body of POST /api/v1/uma/shares: exactly one of
// user (a user name), email (a verified e-mail address) and group (a group
// id or display name).
type ShareRequest struct {
	ResourceID string     `json:"resourceId"`
	User       string     `json:"user,omitempty"`
	Email      string     `json:"email,omitempty"`
	Group      string     `json:"group,omitempty"`
	Scopes     []string   `json:"scopes"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	// Conditions limit the share to times of the week and dates.
	Conditions *Conditions `json:"conditions,omitempty"`
}

// apiCreateShare is POST /api/v1/uma/shares.
func (s *Server) apiCreateShare(w http.ResponseWriter, r *http.Request, u *store.User) {
	var req ShareRequest
	if err := readJSON(http.MaxBytesReader(w, r.Body, maxBody+1), &req); err != nil {
		s.apiError(w, r, err)
		return
	}
	sh, err := s.share(r.Context(), u, req)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.viewShare(r.Context(), sh))
}

// ownResource loads a resource of owner; someone else's is not found.
func (s *Server) ownResource(ctx context.Context, owner, id, field string) (*store.UMAResource, error) {
	if id == "" {
		return nil, refuse(http.StatusBadRequest, field, field+" is required")
	}
	res, err := s.resource(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && res.OwnerID != owner) {
		return nil, refuse(http.StatusNotFound, field, "no resource with this id is yours")
	}
	return res, err
}

// share shares one of u's resources as req says, audited.
func (s *Server) share(ctx context.Context, u *store.User, req ShareRequest) (*store.UMAShare, error) {
	sh, err := s.newShare(ctx, u, req)
	if err != nil {
		return nil, err
	}
	return sh, s.st.WithTx(ctx, func(tx store.Tx) error { return s.storeShare(ctx, tx, u, sh) })
}

// newShare checks req, a share of one of u's resources, and returns the
// share it makes, not stored yet.
func (s *Server) newShare(ctx context.Context, u *store.User, req ShareRequest) (*store.UMAShare, error) {
	res, err := s.ownResource(ctx, u.ID, req.ResourceID, "resourceId")
	if err != nil {
		return nil, err
	}
	if len(req.Scopes) == 0 {
		return nil, refuse(http.StatusBadRequest, "scopes", "name at least one scope of the resource: "+strings.Join(res.Scopes, ", "))
	}
	for i, sc := range req.Scopes {
		if !slices.Contains(res.Scopes, sc) {
			return nil, refuse(http.StatusBadRequest, fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("the resource has no scope %q", sc))
		}
	}
	var exp time.Time
	if req.ExpiresAt != nil {
		if exp = req.ExpiresAt.UTC(); !exp.After(s.now()) {
			return nil, refuse(http.StatusBadRequest, "expiresAt", "must be in the future")
		}
	}
	grantee, err := s.grantee(ctx, req)
	if err != nil {
		return nil, err
	}
	if grantee.Kind == store.KindUser && grantee.ID == u.ID {
		return nil, refuse(http.StatusBadRequest, "user", "you own this resource already")
	}
	cond, err := s.checkConditions(ctx, u.ID, req.Conditions)
	if err != nil {
		return nil, err
	}
	return &store.UMAShare{ResourceID: res.ID, OwnerID: u.ID, Grantee: grantee, Scopes: dedupe(req.Scopes), ExpiresAt: exp, Conditions: cond, Created: s.now()}, nil
}

// storeShare stores sh, made by newShare, with its audit record in tx.
func (s *Server) storeShare(ctx context.Context, tx store.Tx, u *store.User, sh *store.UMAShare) error {
	if err := tx.CreateUMAShare(ctx, sh); err != nil {
		return err
	}
	var exp *time.Time
	if !sh.ExpiresAt.IsZero() {
		exp = &sh.ExpiresAt
	}
	return s.audit(ctx, tx, "user:"+u.ID, "uma.share.create", resourceRef(sh.ResourceID),
		auditJSON(map[string]any{"share": sh.ID, "grantee": sh.Grantee, "scopes": sh.Scopes, "expiresAt": exp, "conditions": sh.Conditions}))
}

// grantee resolves who a share is for. A user is matched by user name or
// by an e-mail address only when that address is verified.
func (s *Server) grantee(ctx context.Context, req ShareRequest) (store.Ref, error) {
	n := 0
	for _, v := range []string{req.User, req.Email, req.Group} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return store.Ref{}, refuse(http.StatusBadRequest, "user", "name exactly one of user, email and group")
	}
	noUser := refuse(http.StatusNotFound, "user", "no active user with this name")
	switch {
	case req.User != "":
		u, err := s.opts.Users.GetUserByName(ctx, req.User)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.Status != store.StatusActive) {
			return store.Ref{}, noUser
		}
		if err != nil {
			return store.Ref{}, err
		}
		return store.Ref{Kind: store.KindUser, ID: u.ID}, nil
	case req.Email != "":
		us, _, err := s.st.ListUsers(ctx, store.Query{Limit: 2, Filter: store.And{
			Left:  store.Compare{Field: "emails", Op: store.OpEq, Value: req.Email},
			Right: store.Compare{Field: "emailVerified", Op: store.OpEq, Value: true},
		}})
		if err != nil {
			return store.Ref{}, err
		}
		if len(us) != 1 || us[0].Status != store.StatusActive {
			return store.Ref{}, refuse(http.StatusNotFound, "email", "no active user with this verified e-mail address")
		}
		return store.Ref{Kind: store.KindUser, ID: us[0].ID}, nil
	default:
		g, err := s.st.GetGroup(ctx, req.Group)
		if errors.Is(err, store.ErrNotFound) {
			gs, _, lerr := s.st.ListGroups(ctx, store.Query{Limit: 2, Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: req.Group}})
			if lerr != nil {
				return store.Ref{}, lerr
			}
			if len(gs) != 1 {
				return store.Ref{}, refuse(http.StatusNotFound, "group", "no group with this id or name")
			}
			g, err = gs[0], nil
		}
		if err != nil {
			return store.Ref{}, err
		}
		return store.Ref{Kind: store.KindGroup, ID: g.ID}, nil
	}
}

// apiRevokeShare is DELETE /api/v1/uma/shares/{id}: the share goes, and
// with it every RPT it produced, at once (grant.revoke).
func (s *Server) apiRevokeShare(w http.ResponseWriter, r *http.Request, u *store.User) {
	if err := s.RevokeShare(r.Context(), "user:"+u.ID, u.ID, r.PathValue("id")); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiSetConditions is PUT /api/v1/uma/shares/{id}/conditions: the body is
// the share's new conditions ({} for none); the RPTs resting on the share
// are revoked at once.
func (s *Server) apiSetConditions(w http.ResponseWriter, r *http.Request, u *store.User) {
	var c Conditions
	if err := readJSON(http.MaxBytesReader(w, r.Body, maxBody+1), &c); err != nil {
		s.apiError(w, r, err)
		return
	}
	sh, err := s.SetConditions(r.Context(), "user:"+u.ID, u.ID, r.PathValue("id"), &c)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.viewShare(r.Context(), sh))
}

// RevokeShare deletes owner's share id and revokes the RPTs resting on it.
// A share of another owner is not found, as a missing one is.
func (s *Server) RevokeShare(ctx context.Context, actor, owner, id string) error {
	sh, err := s.st.GetUMAShare(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sh.OwnerID != owner) {
		return refuse(http.StatusNotFound, "id", "no share with this id is yours")
	}
	if err != nil {
		return err
	}
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.DeleteUMAShare(ctx, id); err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "uma.share.revoke", resourceRef(sh.ResourceID), auditJSON(map[string]any{"share": id, "grantee": sh.Grantee}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return refuse(http.StatusNotFound, "id", "no share with this id is yours")
	}
	if err != nil {
		return err
	}
	return s.revokeShareGrants(ctx, actor, "uma share revoked", []*store.UMAShare{sh})
}

type requestView struct {
	ID            string    `json:"id"`
	ResourceID    string    `json:"resourceId"`
	ResourceName  string    `json:"resourceName,omitempty"`
	Requester     string    `json:"requester"`
	RequesterName string    `json:"requesterName,omitempty"`
	ClientID      string    `json:"clientId"`
	Scopes        []string  `json:"scopes"`
	Status        string    `json:"status"`
	Created       time.Time `json:"created"`
}

// requestsOf returns the requests in status st for owner's resources.
func (s *Server) requestsOf(ctx context.Context, owner string, st store.UMARequestStatus) ([]requestView, error) {
	reqs, err := s.st.ListUMARequests(ctx, store.UMARequestFilter{OwnerID: owner, Status: st})
	if err != nil {
		return nil, err
	}
	out := []requestView{}
	for _, q := range reqs {
		v := requestView{ID: q.ID, ResourceID: q.ResourceID, Requester: q.RequesterID, ClientID: q.ClientID, Scopes: nonNil(q.Scopes), Status: string(q.Status), Created: q.Created}
		if res, err := s.resource(ctx, q.ResourceID); err == nil {
			v.ResourceName = res.Name
		}
		if ru, err := s.opts.Users.GetUser(ctx, q.RequesterID); err == nil {
			v.RequesterName = ru.UserName
		}
		out = append(out, v)
	}
	return out, nil
}

// apiRequests is GET /api/v1/uma/requests: the pending requests for the
// user's resources (?status=approved|denied|pending).
func (s *Server) apiRequests(w http.ResponseWriter, r *http.Request, u *store.User) {
	st := store.UMARequestStatus(r.URL.Query().Get("status"))
	switch st {
	case "":
		st = store.UMAPending
	case store.UMAPending, store.UMAApproved, store.UMADenied:
	default:
		problem.Write(w, http.StatusBadRequest, "status", "status must be pending, approved or denied")
		return
	}
	out, err := s.requestsOf(r.Context(), u.ID, st)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": out})
}

// decision is what an owner approves: narrower scopes, an end date (both
// optional).
type decision struct {
	Scopes    []string   `json:"scopes,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// pendingOf loads a pending request for one of owner's resources. The
// requesting party cannot decide their own request: it is not theirs to see.
func (s *Server) pendingOf(ctx context.Context, owner, id string) (*store.UMARequest, error) {
	q, err := s.st.GetUMARequest(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && q.OwnerID != owner) {
		return nil, refuse(http.StatusNotFound, "id", "no request with this id for your resources")
	}
	if err != nil {
		return nil, err
	}
	if q.RequesterID == owner {
		return nil, refuse(http.StatusForbidden, "id", "you cannot decide your own request")
	}
	if q.Status != store.UMAPending {
		return nil, refuse(http.StatusConflict, "id", "this request was decided already")
	}
	// The resource may have changed owner since.
	if _, err := s.ownResource(ctx, owner, q.ResourceID, "id"); err != nil {
		return nil, err
	}
	return q, nil
}

// approve decides u's pending request id: a share for the requesting party
// with the requested scopes (or d's subset), optionally until d's date. The
// decision and the share are stored together.
func (s *Server) approve(ctx context.Context, u *store.User, id string, d decision) (*store.UMAShare, error) {
	q, err := s.pendingOf(ctx, u.ID, id)
	if err != nil {
		return nil, err
	}
	scopes := q.Scopes
	if d.Scopes != nil {
		for i, sc := range d.Scopes {
			if !slices.Contains(q.Scopes, sc) {
				return nil, refuse(http.StatusBadRequest, fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("%q was not requested: approve only scopes that were", sc))
			}
		}
		scopes = d.Scopes
	}
	ru, active, err := s.activeUser(ctx, q.RequesterID)
	if err != nil {
		return nil, err
	}
	if !active {
		return nil, refuse(http.StatusConflict, "id", "the requesting party is no longer an active user")
	}
	sh, err := s.newShare(ctx, u, ShareRequest{ResourceID: q.ResourceID, User: ru.UserName, Scopes: scopes, ExpiresAt: d.ExpiresAt})
	if err != nil {
		return nil, err
	}
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		if err := s.recordDecision(ctx, tx, u, q, store.UMAApproved); err != nil {
			return err
		}
		return s.storeShare(ctx, tx, u, sh)
	})
	return sh, err
}

// deny decides u's pending request id: the requesting party's next token
// request answers request_denied.
func (s *Server) deny(ctx context.Context, u *store.User, id string) error {
	q, err := s.pendingOf(ctx, u.ID, id)
	if err != nil {
		return err
	}
	return s.st.WithTx(ctx, func(tx store.Tx) error { return s.recordDecision(ctx, tx, u, q, store.UMADenied) })
}

// recordDecision records u's decision on q in tx; a request decided
// meanwhile is a conflict.
func (s *Server) recordDecision(ctx context.Context, tx store.Tx, u *store.User, q *store.UMARequest, st store.UMARequestStatus) error {
	err := tx.DecideUMARequest(ctx, q.ID, st, s.now())
	if errors.Is(err, store.ErrConflict) {
		return refuse(http.StatusConflict, "id", "this request was decided already")
	}
	if err != nil {
		return err
	}
	return s.audit(ctx, tx, "user:"+u.ID, "uma.request."+string(st), resourceRef(q.ResourceID), auditJSON(map[string]any{"request": q.ID, "requester": q.RequesterID}))
}

// apiApprove is POST /api/v1/uma/requests/{id}/approve (optional body
// decision).
func (s *Server) apiApprove(w http.ResponseWriter, r *http.Request, u *store.User) {
	var d decision
	if r.ContentLength != 0 {
		if err := readJSON(http.MaxBytesReader(w, r.Body, maxBody+1), &d); err != nil {
			s.apiError(w, r, err)
			return
		}
	}
	sh, err := s.approve(r.Context(), u, r.PathValue("id"), d)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.viewShare(r.Context(), sh))
}

// apiDeny is POST /api/v1/uma/requests/{id}/deny.
func (s *Server) apiDeny(w http.ResponseWriter, r *http.Request, u *store.User) {
	if err := s.deny(r.Context(), u, r.PathValue("id")); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sharedEntry is a live share to a user (or one of their groups) with its
// resource.
type sharedEntry struct {
	Resource resourceView `json:"resource"`
	shareView
}

// sharedWith returns the live shares to user or their groups, with the
// resources.
func (s *Server) sharedWith(ctx context.Context, user string) ([]sharedEntry, error) {
	groups, err := s.userGroups(ctx, user)
	if err != nil {
		return nil, err
	}
	refs := []store.Ref{{Kind: store.KindUser, ID: user}}
	for _, g := range groups {
		refs = append(refs, store.Ref{Kind: store.KindGroup, ID: g})
	}
	out := []sharedEntry{}
	now := s.now()
	for _, ref := range refs {
		shares, err := s.st.ListUMAShares(ctx, store.UMAShareFilter{Grantee: &ref})
		if err != nil {
			return nil, err
		}
		for _, sh := range shares {
			if !sh.ExpiresAt.IsZero() && !now.Before(sh.ExpiresAt) {
				continue
			}
			res, err := s.resource(ctx, sh.ResourceID)
			if err != nil || res.OwnerID != sh.OwnerID {
				continue // gone, or owned by someone else now: the share counts no more
			}
			rv := viewResource(res)
			if o, err := s.opts.Users.GetUser(ctx, res.OwnerID); err == nil {
				rv.Owner = o.UserName
			}
			out = append(out, sharedEntry{Resource: rv, shareView: s.viewShare(ctx, sh)})
		}
	}
	return out, nil
}

// apiSharedWithMe is GET /api/v1/uma/shared-with-me: the live shares to the
// user or their groups, with the resources.
func (s *Server) apiSharedWithMe(w http.ResponseWriter, r *http.Request, u *store.User) {
	out, err := s.sharedWith(r.Context(), u.ID)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"shared": out})
}
