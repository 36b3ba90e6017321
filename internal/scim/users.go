package scim

import (
	"github.com/thingid/thingid/internal/store"
)

// users serves the User resource type (RFC 7643 §4.1).
type users struct{ svc Service }

func (users) typ() *resourceType { return userType }

// passwordKept stands for an unchanged password in the representation a PATCH
// works on; it is never written out ("password" is returned "never").
type passwordKept struct{}

// userToSCIM maps a user to its representation; groups is nil when not wanted.
func userToSCIM(c *call, u *store.User, groups []any) map[string]any {
	obj := map[string]any{
		"schemas":  []any{userURN},
		"id":       u.ID,
		"meta":     meta(c, userType, u.Meta),
		"userName": u.UserName,
		"active":   u.Status != store.StatusDisabled,
	}
	setStr(obj, "externalId", u.ExternalID)
	setStr(obj, "displayName", u.DisplayName)
	setStr(obj, "locale", u.Locale)
	setStr(obj, "timezone", u.Timezone)
	name := map[string]any{}
	setStr(name, "formatted", u.Name.Formatted)
	setStr(name, "familyName", u.Name.FamilyName)
	setStr(name, "givenName", u.Name.GivenName)
	setStr(name, "middleName", u.Name.MiddleName)
	setStr(name, "honorificPrefix", u.Name.HonorificPrefix)
	setStr(name, "honorificSuffix", u.Name.HonorificSuffix)
	if len(name) > 0 {
		obj["name"] = name
	}
	if l := multiToSCIM(u.Emails); l != nil {
		obj["emails"] = l
	}
	if l := multiToSCIM(u.PhoneNumbers); l != nil {
		obj["phoneNumbers"] = l
	}
	if len(groups) > 0 {
		obj["groups"] = groups
	}
	return obj
}

// userFromSCIM sets every writable attribute of u from the canonical obj (replace
// semantics: what obj lacks is cleared). The password is the caller's business.
func userFromSCIM(obj map[string]any, u *store.User) {
	u.UserName = getStr(obj, "userName")
	u.ExternalID = getStr(obj, "externalId")
	u.DisplayName = getStr(obj, "displayName")
	u.Locale = getStr(obj, "locale")
	u.Timezone = getStr(obj, "timezone")
	name := getObj(obj, "name")
	u.Name = store.Name{
		Formatted:       getStr(name, "formatted"),
		FamilyName:      getStr(name, "familyName"),
		GivenName:       getStr(name, "givenName"),
		MiddleName:      getStr(name, "middleName"),
		HonorificPrefix: getStr(name, "honorificPrefix"),
		HonorificSuffix: getStr(name, "honorificSuffix"),
	}
	u.Emails = multiFromSCIM(getList(obj, "emails"))
	u.PhoneNumbers = multiFromSCIM(getList(obj, "phoneNumbers"))
	u.Status = statusOf(getActive(obj))
}

func multiToSCIM(vs []store.MultiValue) []any {
	if len(vs) == 0 {
		return nil
	}
	out := make([]any, len(vs))
	for i, v := range vs {
		m := map[string]any{"value": v.Value}
		setStr(m, "type", v.Type)
		setStr(m, "display", v.Display)
		if v.Primary {
			m["primary"] = true
		}
		out[i] = m
	}
	return out
}

func multiFromSCIM(list []any) []store.MultiValue {
	var out []store.MultiValue
	for _, e := range list {
		m, _ := e.(map[string]any)
		p, _ := m["primary"].(bool)
		out = append(out, store.MultiValue{Value: getStr(m, "value"), Type: getStr(m, "type"),
			Display: getStr(m, "display"), Primary: p})
	}
	return out
}

func setStr(obj map[string]any, name, v string) {
	if v != "" {
		obj[name] = v
	}
}

// full returns the representation of u with the read-only attributes p wants.
func (r users) full(c *call, u *store.User, p *projection) (map[string]any, error) {
	var groups []any
	if p.want("", userSchema.attr("groups")) {
		var err error
		if groups, err = memberOf(c, r.svc, store.Ref{Kind: store.KindUser, ID: u.ID}); err != nil {
			return nil, err
		}
	}
	return userToSCIM(c, u, groups), nil
}

// memberOf lists the groups ref is a direct member of, as RFC 7643 §4.1.2 "groups".
func memberOf(c *call, svc Service, ref store.Ref) ([]any, error) {
	gs, _, err := svc.ListGroups(c.ctx, store.Query{Limit: -1, SortBy: "displayName",
		Filter: store.Any{Field: "members", Where: store.And{
			Left:  store.Compare{Field: "value", Op: store.OpEq, Value: ref.ID},
			Right: store.Compare{Field: "type", Op: store.OpEq, Value: string(ref.Kind)},
		}}})
	if err != nil {
		return nil, err
	}
	out := make([]any, len(gs))
	for i, g := range gs {
		out[i] = map[string]any{"value": g.ID, "$ref": c.base + "/Groups/" + g.ID, "display": g.DisplayName, "type": "direct"}
	}
	return out, nil
}

func (r users) get(c *call, id string, p *projection) (map[string]any, error) {
	u, err := r.svc.GetUser(c.ctx, id)
	if err != nil {
		return nil, err
	}
	return r.full(c, u, p)
}

func (r users) list(c *call, q store.Query, p *projection) ([]map[string]any, int, error) {
	us, total, err := r.svc.ListUsers(c.ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]map[string]any, len(us))
	for i, u := range us {
		if out[i], err = r.full(c, u, p); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

func (r users) create(c *call, in map[string]any) (map[string]any, error) {
	obj, err := checkResource(userType, in)
	if err != nil {
		return nil, err
	}
	u := &store.User{}
	userFromSCIM(obj, u)
	u, err = r.svc.CreateUser(c.ctx, c.actor, u, getStr(obj, "password"))
	if err != nil {
		return nil, err
	}
	return userToSCIM(c, u, nil), nil
}

func (r users) replace(c *call, id string, ifRevision int64, in map[string]any) (map[string]any, error) {
	obj, err := checkResource(userType, in)
	if err != nil {
		return nil, err
	}
	u, err := r.svc.UpdateUser(c.ctx, c.actor, id, ifRevision, func(u *store.User) error {
		userFromSCIM(obj, u)
		// RFC 7644 §3.5.1 lets a PUT that omits the write-only password keep it.
		if pw := getStr(obj, "password"); pw != "" {
			h, err := r.svc.HashPassword(pw, u)
			if err != nil {
				return err
			}
			u.PasswordHash = h
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r.full(c, u, nil)
}

func (r users) patch(c *call, id string, ifRevision int64, ops []patchOp) (map[string]any, error) {
	u, err := r.svc.UpdateUser(c.ctx, c.actor, id, ifRevision, func(u *store.User) error {
		obj := userToSCIM(c, u, nil)
		if u.PasswordHash != "" {
			obj["password"] = passwordKept{}
		}
		if err := applyPatch(userType, obj, ops); err != nil {
			return err
		}
		userFromSCIM(obj, u)
		switch pw := obj["password"].(type) {
		case nil:
			u.PasswordHash = ""
		case string:
			h, err := r.svc.HashPassword(pw, u)
			if err != nil {
				return err
			}
			u.PasswordHash = h
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r.full(c, u, nil)
}

func (r users) delete(c *call, id string, ifRevision int64) error {
	return r.svc.DeleteUser(c.ctx, c.actor, id, ifRevision)
}
