package scim

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
)

// A caller without full administrator power (an OAuth client whose token has
// `scim:write` but not `admin`) provisions users, groups and devices, but must
// not make anyone an administrator nor take an administrator's account over.
// An administrator is an active user who is a direct member of a group named
// authn.AdminGroup, and signs in with userName and password; so such a caller
// may not:
//
//   - create a group with that name, rename a group to or from it, change its
//     members, or delete it;
//   - change the userName, password or active state of a user who is a member
//     of such a group, or delete that user.
//
// Everything else (other users and groups, devices, an administrator's other
// attributes) stays open to it. The rules are enforced by guarded, the Service
// every resource and Bulk operation writes through, so no write path can
// forget them.

// limitedKey marks a call context whose caller lacks full administrator power.
type limitedKey struct{}

func limited(ctx context.Context) bool {
	l, _ := ctx.Value(limitedKey{}).(bool)
	return l
}

func adminOnly(what string) *Error {
	return errorf(http.StatusForbidden, typeMutability,
		"%s needs the `admin` scope: a `scim:write` token cannot make or change administrators", what)
}

func isAdminGroupName(name string) bool {
	return strings.EqualFold(strings.TrimSpace(name), authn.AdminGroup)
}

// guarded is the Service with the rules above applied to limited callers.
type guarded struct{ Service }

var _ Service = guarded{}

func (s guarded) CreateGroup(ctx context.Context, actor string, g *store.Group) (*store.Group, error) {
	if limited(ctx) && isAdminGroupName(g.DisplayName) {
		return nil, adminOnly("creating a group named " + authn.AdminGroup)
	}
	return s.Service.CreateGroup(ctx, actor, g)
}

func (s guarded) UpdateGroup(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Group) error) (*store.Group, error) {
	if !limited(ctx) {
		return s.Service.UpdateGroup(ctx, actor, id, ifRevision, fn)
	}
	// Checked on the stored group inside the update's transaction.
	return s.Service.UpdateGroup(ctx, actor, id, ifRevision, func(g *store.Group) error {
		name, members := g.DisplayName, memberSet(g.Members)
		if err := fn(g); err != nil {
			return err
		}
		renamed := strings.TrimSpace(g.DisplayName) != strings.TrimSpace(name)
		switch {
		case isAdminGroupName(name) && renamed:
			return adminOnly("renaming the " + authn.AdminGroup + " group")
		case isAdminGroupName(g.DisplayName) && renamed:
			return adminOnly("renaming a group to " + authn.AdminGroup)
		case isAdminGroupName(name) && !maps.Equal(members, memberSet(g.Members)):
			return adminOnly("changing the members of the " + authn.AdminGroup + " group")
		}
		return nil
	})
}

func (s guarded) DeleteGroup(ctx context.Context, actor, id string, ifRevision int64) error {
	if limited(ctx) {
		g, err := s.Service.GetGroup(ctx, id)
		if err != nil {
			return err
		}
		if isAdminGroupName(g.DisplayName) {
			return adminOnly("deleting the " + authn.AdminGroup + " group")
		}
	}
	return s.Service.DeleteGroup(ctx, actor, id, ifRevision)
}

func (s guarded) UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error) {
	if !limited(ctx) {
		return s.Service.UpdateUser(ctx, actor, id, ifRevision, fn)
	}
	admin, err := s.isAdmin(ctx, id)
	if err != nil {
		return nil, err
	}
	if !admin {
		return s.Service.UpdateUser(ctx, actor, id, ifRevision, fn)
	}
	return s.Service.UpdateUser(ctx, actor, id, ifRevision, func(u *store.User) error {
		before := *u
		if err := fn(u); err != nil {
			return err
		}
		switch {
		case u.PasswordHash != before.PasswordHash || u.MustChangePassword != before.MustChangePassword:
			return adminOnly("changing an administrator's password")
		case strings.TrimSpace(u.UserName) != before.UserName:
			return adminOnly("changing an administrator's userName")
		case u.Status != before.Status:
			return adminOnly("changing whether an administrator is active")
		}
		return nil
	})
}

func (s guarded) DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error {
	if limited(ctx) {
		admin, err := s.isAdmin(ctx, id)
		if err != nil {
			return err
		}
		if admin {
			return adminOnly("deleting an administrator")
		}
	}
	return s.Service.DeleteUser(ctx, actor, id, ifRevision)
}

// isAdmin tells whether user id is a direct member of an administrators group,
// active or not: a disabled administrator is one re-enabling away. It reads
// before the update's transaction; only a full administrator can make a user
// one meanwhile.
func (s guarded) isAdmin(ctx context.Context, id string) (bool, error) {
	gs, _, err := s.Service.ListGroups(ctx, store.Query{
		Filter: store.Any{Field: "members", Where: store.And{
			Left:  store.Compare{Field: "value", Op: store.OpEq, Value: id},
			Right: store.Compare{Field: "type", Op: store.OpEq, Value: string(store.KindUser)},
		}},
		Limit: -1,
	})
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(gs, func(g *store.Group) bool { return isAdminGroupName(g.DisplayName) }), nil
}

func memberSet(ms []store.Ref) map[store.Ref]bool {
	set := make(map[store.Ref]bool, len(ms))
	for _, m := range ms {
		set[m] = true
	}
	return set
}
