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
// not make anyone privileged nor take a privileged account over. Privileged
// are the active direct members of a group named authn.AdminGroup
// (administrators) or authn.SupportGroup (support staff, who read the whole
// audit log), who sign in with userName and password; so such a caller may
// not:
//
//   - create a group with one of those names, rename a group to or from one,
//     change its members, or delete it;
//   - change the userName, password or active state of a user who is a member
//     of such a group, or delete that user.
//
// Everything else (other users and groups, devices, a privileged user's other
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
		"%s needs the `admin` scope: a `scim:write` token cannot make or change administrators or support staff", what)
}

// privilegedGroup returns the privileged group a group named name is, or "".
func privilegedGroup(name string) string {
	for _, g := range []string{authn.AdminGroup, authn.SupportGroup} {
		if strings.EqualFold(strings.TrimSpace(name), g) {
			return g
		}
	}
	return ""
}

// guarded is the Service with the rules above applied to limited callers.
type guarded struct{ Service }

var _ Service = guarded{}

func (s guarded) CreateGroup(ctx context.Context, actor string, g *store.Group) (*store.Group, error) {
	if p := privilegedGroup(g.DisplayName); limited(ctx) && p != "" {
		return nil, adminOnly("creating a group named " + p)
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
		was, is := privilegedGroup(name), privilegedGroup(g.DisplayName)
		switch {
		case was != "" && renamed:
			return adminOnly("renaming the " + was + " group")
		case is != "" && renamed:
			return adminOnly("renaming a group to " + is)
		case was != "" && !maps.Equal(members, memberSet(g.Members)):
			return adminOnly("changing the members of the " + was + " group")
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
		if p := privilegedGroup(g.DisplayName); p != "" {
			return adminOnly("deleting the " + p + " group")
		}
	}
	return s.Service.DeleteGroup(ctx, actor, id, ifRevision)
}

func (s guarded) UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error) {
	if !limited(ctx) {
		return s.Service.UpdateUser(ctx, actor, id, ifRevision, fn)
	}
	privileged, err := s.isPrivileged(ctx, id)
	if err != nil {
		return nil, err
	}
	if !privileged {
		return s.Service.UpdateUser(ctx, actor, id, ifRevision, fn)
	}
	return s.Service.UpdateUser(ctx, actor, id, ifRevision, func(u *store.User) error {
		before := *u
		if err := fn(u); err != nil {
			return err
		}
		switch {
		case u.PasswordHash != before.PasswordHash || u.MustChangePassword != before.MustChangePassword:
			return adminOnly("changing the password of an administrator or support user")
		case strings.TrimSpace(u.UserName) != before.UserName:
			return adminOnly("changing the userName of an administrator or support user")
		case u.Status != before.Status:
			return adminOnly("changing whether an administrator or support user is active")
		}
		return nil
	})
}

func (s guarded) DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error {
	if limited(ctx) {
		privileged, err := s.isPrivileged(ctx, id)
		if err != nil {
			return err
		}
		if privileged {
			return adminOnly("deleting an administrator or support user")
		}
	}
	return s.Service.DeleteUser(ctx, actor, id, ifRevision)
}

// isPrivileged tells whether user id is a direct member of a privileged
// group, active or not: a disabled administrator is one re-enabling away. It
// reads before the update's transaction; only a full administrator can make a
// user one meanwhile.
func (s guarded) isPrivileged(ctx context.Context, id string) (bool, error) {
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
	return slices.ContainsFunc(gs, func(g *store.Group) bool { return privilegedGroup(g.DisplayName) != "" }), nil
}

func memberSet(ms []store.Ref) map[store.Ref]bool {
	set := make(map[store.Ref]bool, len(ms))
	for _, m := range ms {
		set[m] = true
	}
	return set
}
