package scim

import (
	"errors"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// groups serves the Group resource type (RFC 7643 §4.2); members may be users,
// devices (things) or groups.
type groups struct{ svc Service }

func (groups) typ() *resourceType { return groupType }

// memberTypes maps SCIM member types to store kinds and the endpoints of their $ref.
var memberTypes = []struct {
	scim     string
	kind     store.Kind
	endpoint string
}{
	{"User", store.KindUser, "Users"},
	{"Device", store.KindThing, "Devices"},
	{"Group", store.KindGroup, "Groups"},
}

func kindOfType(t string) (store.Kind, bool) {
	for _, m := range memberTypes {
		if strings.EqualFold(m.scim, t) {
			return m.kind, true
		}
	}
	return "", false
}

func groupToSCIM(c *call, g *store.Group, display map[string]string) map[string]any {
	obj := map[string]any{
		"schemas":     []any{groupURN},
		"id":          g.ID,
		"meta":        meta(c, groupType, g.Meta),
		"displayName": g.DisplayName,
	}
	setStr(obj, "externalId", g.ExternalID)
	if len(g.Members) > 0 {
		members := make([]any, len(g.Members))
		for i, m := range g.Members {
			e := map[string]any{"value": m.ID}
			for _, t := range memberTypes {
				if t.kind == m.Kind {
					e["type"] = t.scim
					e["$ref"] = c.base + "/" + t.endpoint + "/" + m.ID
				}
			}
			setStr(e, "display", display[m.ID])
			members[i] = e
		}
		obj["members"] = members
	}
	return obj
}

// groupFromSCIM sets the writable attributes of g from the canonical obj. kinds
// resolves members given without a type or $ref.
func groupFromSCIM(obj map[string]any, g *store.Group, kinds map[string]store.Kind) error {
	g.DisplayName = getStr(obj, "displayName")
	g.ExternalID = getStr(obj, "externalId")
	g.Members = nil
	for _, e := range getList(obj, "members") {
		m, _ := e.(map[string]any)
		id := getStr(m, "value")
		kind, err := memberKind(m, kinds)
		if err != nil {
			return err
		}
		g.Members = append(g.Members, store.Ref{Kind: kind, ID: id})
	}
	return nil
}

// memberKind takes a member's kind from its type, else from its $ref, else from
// the kinds resolved by looking the identifier up.
func memberKind(m map[string]any, kinds map[string]store.Kind) (store.Kind, error) {
	id := getStr(m, "value")
	if t := getStr(m, "type"); t != "" {
		k, ok := kindOfType(t)
		if !ok {
			return "", badValue("members.type: %q is not one of User, Group, Device", t)
		}
		return k, nil
	}
	if ref := getStr(m, "$ref"); ref != "" {
		for _, t := range memberTypes {
			if strings.HasSuffix(ref, "/"+t.endpoint+"/"+id) {
				return t.kind, nil
			}
		}
		return "", badValue("members.$ref: %q is not the URI of a User, Group or Device with id %q", ref, id)
	}
	if k, ok := kinds[id]; ok {
		return k, nil
	}
	return "", badValue("members.value: no User, Device or Group has id %q", id)
}

// resolveKinds looks up the kind of every member in list that has neither type nor
// $ref. It runs before the update transaction, never inside it.
func resolveKinds(c *call, svc Service, list []any, kinds map[string]store.Kind) error {
	for _, e := range list {
		m, _ := e.(map[string]any)
		id := getStr(m, "value")
		if id == "" || getStr(m, "type") != "" || getStr(m, "$ref") != "" || kinds[id] != "" {
			continue
		}
		for _, t := range memberTypes {
			var err error
			switch t.kind {
			case store.KindUser:
				_, err = svc.GetUser(c.ctx, id)
			case store.KindThing:
				_, err = svc.GetThing(c.ctx, id)
			case store.KindGroup:
				_, err = svc.GetGroup(c.ctx, id)
			}
			if err == nil {
				kinds[id] = t.kind
				break
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// memberValues gathers the members named in PATCH operations, to resolve their kinds.
func memberValues(ops []patchOp) []any {
	var list []any
	for _, op := range ops {
		switch v := op.Value.(type) {
		case []any:
			list = append(list, v...)
		case map[string]any:
			list = append(list, v)
			for k, mv := range v {
				if strings.EqualFold(k, "members") {
					l, _ := mv.([]any)
					list = append(list, l...)
				}
			}
		}
	}
	return list
}

// full returns the representation of g, with member names when p wants members.
func (r groups) full(c *call, g *store.Group, p *projection) (map[string]any, error) {
	var display map[string]string
	if len(g.Members) > 0 && p.want("", groupSchema.attr("members")) {
		var err error
		if display, err = r.memberNames(c, g); err != nil {
			return nil, err
		}
	}
	return groupToSCIM(c, g, display), nil
}

// memberNames finds the display names of g's members with one query per kind.
func (r groups) memberNames(c *call, g *store.Group) (map[string]string, error) {
	names := map[string]string{}
	inGroup := store.Query{Limit: -1, Filter: store.Compare{Field: "groups", Op: store.OpEq, Value: g.ID}}
	us, _, err := r.svc.ListUsers(c.ctx, inGroup)
	if err != nil {
		return nil, err
	}
	for _, u := range us {
		names[u.ID] = u.DisplayName
		if u.DisplayName == "" {
			names[u.ID] = u.UserName
		}
	}
	ts, _, err := r.svc.ListThings(c.ctx, inGroup)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		names[t.ID] = t.DisplayName
	}
	for _, m := range g.Members {
		if m.Kind == store.KindGroup {
			sub, err := r.svc.GetGroup(c.ctx, m.ID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			if err == nil {
				names[m.ID] = sub.DisplayName
			}
		}
	}
	return names, nil
}

func (r groups) get(c *call, id string, p *projection) (map[string]any, error) {
	g, err := r.svc.GetGroup(c.ctx, id)
	if err != nil {
		return nil, err
	}
	return r.full(c, g, p)
}

func (r groups) list(c *call, q store.Query, p *projection) ([]map[string]any, int, error) {
	gs, total, err := r.svc.ListGroups(c.ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]map[string]any, len(gs))
	for i, g := range gs {
		if out[i], err = r.full(c, g, p); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

func (r groups) create(c *call, in map[string]any) (map[string]any, error) {
	obj, err := checkResource(groupType, in)
	if err != nil {
		return nil, err
	}
	kinds := map[string]store.Kind{}
	if err := resolveKinds(c, r.svc, getList(obj, "members"), kinds); err != nil {
		return nil, err
	}
	g := &store.Group{}
	if err := groupFromSCIM(obj, g, kinds); err != nil {
		return nil, err
	}
	if g, err = r.svc.CreateGroup(c.ctx, c.actor, g); err != nil {
		return nil, r.memberNotFound(c, "", err)
	}
	return r.full(c, g, nil)
}

func (r groups) replace(c *call, id string, ifRevision int64, in map[string]any) (map[string]any, error) {
	obj, err := checkResource(groupType, in)
	if err != nil {
		return nil, err
	}
	kinds := map[string]store.Kind{}
	if err := resolveKinds(c, r.svc, getList(obj, "members"), kinds); err != nil {
		return nil, err
	}
	g, err := r.svc.UpdateGroup(c.ctx, c.actor, id, ifRevision, func(g *store.Group) error {
		return groupFromSCIM(obj, g, kinds)
	})
	if err != nil {
		return nil, r.memberNotFound(c, id, err)
	}
	return r.full(c, g, nil)
}

func (r groups) patch(c *call, id string, ifRevision int64, ops []patchOp) (map[string]any, error) {
	kinds := map[string]store.Kind{}
	if err := resolveKinds(c, r.svc, memberValues(ops), kinds); err != nil {
		return nil, err
	}
	g, err := r.svc.UpdateGroup(c.ctx, c.actor, id, ifRevision, func(g *store.Group) error {
		obj := groupToSCIM(c, g, nil)
		if err := applyPatch(groupType, obj, ops); err != nil {
			return err
		}
		return groupFromSCIM(obj, g, kinds)
	})
	if err != nil {
		return nil, r.memberNotFound(c, id, err)
	}
	return r.full(c, g, nil)
}

func (r groups) delete(c *call, id string, ifRevision int64) error {
	return r.svc.DeleteGroup(c.ctx, c.actor, id, ifRevision)
}

// memberNotFound tells a missing member (a bad value) from a missing group (404)
// when writing group id ("" on create) failed with store.ErrNotFound.
func (r groups) memberNotFound(c *call, id string, err error) error {
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if id != "" {
		if _, gerr := r.svc.GetGroup(c.ctx, id); gerr != nil {
			return err
		}
	}
	return badValue("members: a member does not exist (%v)", err)
}
