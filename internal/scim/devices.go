package scim

import (
	"context"
	"errors"
	"maps"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// devices serves the Device resource type: the RFC 9944 core Device schema plus the
// thingid extension holding the rest of store.Thing.
type devices struct{ svc Service }

func (devices) typ() *resourceType { return deviceType }

func thingToSCIM(c *call, t *store.Thing, owners, groups []any) map[string]any {
	obj := map[string]any{
		"schemas": []any{deviceURN, thingExtURN},
		"id":      t.ID,
		"meta":    meta(c, deviceType, t.Meta),
		"active":  t.Status != store.StatusDisabled,
	}
	setStr(obj, "externalId", t.ExternalID)
	setStr(obj, "displayName", t.DisplayName)
	if len(groups) > 0 {
		obj["groups"] = groups
	}
	ext := map[string]any{"thingType": string(t.Type)}
	setStr(ext, "serialNumber", t.SerialNumber)
	setStr(ext, "manufacturer", t.Manufacturer)
	setStr(ext, "model", t.Model)
	setStr(ext, "firmwareVersion", t.FirmwareVersion)
	setStr(ext, "location", t.Location)
	if len(t.MACAddresses) > 0 {
		macs := make([]any, len(t.MACAddresses))
		for i, m := range t.MACAddresses {
			macs[i] = m
		}
		ext["macAddresses"] = macs
	}
	if len(t.Attributes) > 0 {
		ext["attributes"] = maps.Clone(t.Attributes)
	}
	if len(owners) > 0 {
		ext["owners"] = owners
	}
	if len(t.Certificates) > 0 {
		certs := make([]any, len(t.Certificates))
		for i, cr := range t.Certificates {
			m := map[string]any{"fingerprintSha256": cr.FingerprintSHA256}
			setStr(m, "subject", cr.Subject)
			setStr(m, "issuer", cr.Issuer)
			if !cr.NotAfter.IsZero() {
				m["notAfter"] = cr.NotAfter.UTC().Format(time.RFC3339)
			}
			certs[i] = m
		}
		ext["certificates"] = certs
	}
	obj[thingExtURN] = ext
	return obj
}

// thingFromSCIM sets the writable attributes of t from the canonical obj.
func thingFromSCIM(obj map[string]any, t *store.Thing) {
	t.ExternalID = getStr(obj, "externalId")
	t.DisplayName = getStr(obj, "displayName")
	t.Status = statusOf(getActive(obj))
	ext := getObj(obj, thingExtURN)
	t.SerialNumber = getStr(ext, "serialNumber")
	t.Type = store.ThingType(getStr(ext, "thingType"))
	t.Manufacturer = getStr(ext, "manufacturer")
	t.Model = getStr(ext, "model")
	t.FirmwareVersion = getStr(ext, "firmwareVersion")
	t.Location = getStr(ext, "location")
	t.MACAddresses = nil
	for _, m := range getList(ext, "macAddresses") {
		t.MACAddresses = append(t.MACAddresses, m.(string))
	}
	t.Attributes = getObj(ext, "attributes")
}

// thingFromRequest validates a POST body and maps it to a new thing.
func thingFromRequest(in map[string]any) (*store.Thing, error) {
	obj, err := checkResource(deviceType, in)
	if err != nil {
		return nil, err
	}
	t := &store.Thing{}
	thingFromSCIM(obj, t)
	return t, nil
}

// full returns the representation of t with the owners and groups p wants.
func (r devices) full(c *call, t *store.Thing, p *projection) (map[string]any, error) {
	ref := store.Ref{Kind: store.KindThing, ID: t.ID}
	var owners, groups []any
	var err error
	if p.want(thingExtURN, thingExtSchema.attr("owners")) {
		if owners, err = r.owners(c, ref); err != nil {
			return nil, err
		}
	}
	if p.want("", deviceSchema.attr("groups")) {
		if groups, err = memberOf(c, r.svc, ref); err != nil {
			return nil, err
		}
	}
	return thingToSCIM(c, t, owners, groups), nil
}

// owners lists the users owning the thing (owner relationships).
func (r devices) owners(c *call, thing store.Ref) ([]any, error) {
	rels, err := r.svc.ListRelationships(c.ctx, store.RelFilter{Kind: store.RelOwner, To: &thing})
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(rels))
	for _, rel := range rels {
		o := map[string]any{"value": rel.From.ID, "$ref": c.base + "/Users/" + rel.From.ID}
		u, err := r.svc.GetUser(c.ctx, rel.From.ID)
		switch {
		case err == nil:
			o["display"] = u.UserName
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (r devices) get(c *call, id string, p *projection) (map[string]any, error) {
	t, err := r.svc.GetThing(c.ctx, id)
	if err != nil {
		return nil, err
	}
	return r.full(c, t, p)
}

func (r devices) list(c *call, q store.Query, p *projection) ([]map[string]any, int, error) {
	ts, total, err := r.svc.ListThings(c.ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]map[string]any, len(ts))
	for i, t := range ts {
		if out[i], err = r.full(c, t, p); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

func (r devices) create(c *call, in map[string]any) (map[string]any, error) {
	t, err := thingFromRequest(in)
	if err != nil {
		return nil, err
	}
	if t, err = r.svc.CreateThing(c.ctx, c.actor, t); err != nil {
		return nil, err
	}
	return thingToSCIM(c, t, nil, nil), nil
}

func (r devices) replace(c *call, id string, ifRevision int64, in map[string]any) (map[string]any, error) {
	obj, err := checkResource(deviceType, in)
	if err != nil {
		return nil, err
	}
	t, err := r.svc.UpdateThing(c.ctx, c.actor, id, ifRevision, func(t *store.Thing) error {
		thingFromSCIM(obj, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r.full(c, t, nil)
}

// patch applies ops; those on "owners" add and remove owner relationships, the
// rest change the thing. The relationship changes cannot share the thing's
// transaction, so the other operations are tried on a copy first and the owner
// changes are undone if updating the thing fails.
func (r devices) patch(c *call, id string, ifRevision int64, ops []patchOp) (map[string]any, error) {
	var ownerOps, rest []patchOp
	for _, op := range ops {
		if op.path != nil && strings.EqualFold(op.path.Attr.Name, "owners") &&
			(op.path.Attr.URI == "" || strings.EqualFold(op.path.Attr.URI, thingExtURN)) {
			ownerOps = append(ownerOps, op)
		} else {
			rest = append(rest, op)
		}
	}
	update := func(t *store.Thing) error {
		obj := thingToSCIM(c, t, nil, nil)
		if err := applyPatch(deviceType, obj, rest); err != nil {
			return err
		}
		thingFromSCIM(obj, t)
		return nil
	}
	var undo []func()
	if len(ownerOps) > 0 {
		t, err := r.svc.GetThing(c.ctx, id)
		if err != nil {
			return nil, err
		}
		if ifRevision != 0 && t.Revision != ifRevision {
			return nil, store.ErrStale
		}
		if err := update(t); err != nil { // dry run on the copy just read
			return nil, err
		}
		if undo, err = r.patchOwners(c, id, ownerOps); err != nil {
			return nil, err
		}
	}
	t, err := r.svc.UpdateThing(c.ctx, c.actor, id, ifRevision, update)
	if err != nil {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	return r.full(c, t, nil)
}

// patchOwners applies add and remove operations on owners and returns how to undo
// what it did; on error it has undone it already.
func (r devices) patchOwners(c *call, id string, ops []patchOp) (undo []func(), err error) {
	thing := store.Ref{Kind: store.KindThing, ID: id}
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			undo = nil
		}
	}()
	owner := func(user string) store.Relationship {
		return store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: user}, To: thing}
	}
	// Undo runs after the request failed; it must not inherit a cancelled context.
	ctx := c.ctx
	for _, op := range ops {
		if op.path.ValueSub != "" || op.path.Attr.Sub != "" {
			return undo, badPath("owners: add or remove whole owners, not %s", op.path)
		}
		switch op.Op {
		case "add":
			ids, err := ownerIDs(op.Value)
			if err != nil {
				return undo, err
			}
			for _, uid := range ids {
				rel := owner(uid)
				switch err := r.svc.AddRelationship(ctx, c.actor, rel); {
				case err == nil:
					undo = append(undo, func() { _ = r.svc.RemoveRelationship(context.WithoutCancel(ctx), c.actor, rel) })
				case errors.Is(err, store.ErrConflict):
					// RFC 7644 §3.5.2.1: adding a value that is present changes nothing.
				case errors.Is(err, store.ErrNotFound):
					return undo, badValue("owners.value: no user has id %q", uid)
				default:
					return undo, err
				}
			}
		case "remove":
			current, err := r.owners(c, thing)
			if err != nil {
				return undo, err
			}
			var ids []string
			switch {
			case op.path.Filter != nil:
				for _, o := range current {
					ok, err := matches(thingExtSchema.attr("owners"), o, op.path.Filter)
					if err != nil {
						return undo, err
					}
					if ok {
						ids = append(ids, getStr(o.(map[string]any), "value"))
					}
				}
				if len(ids) == 0 {
					return undo, noTarget("owners: no owner matches %s", op.path)
				}
			case op.Value != nil:
				if ids, err = ownerIDs(op.Value); err != nil {
					return undo, err
				}
			default:
				for _, o := range current {
					ids = append(ids, getStr(o.(map[string]any), "value"))
				}
			}
			for _, uid := range ids {
				rel := owner(uid)
				switch err := r.svc.RemoveRelationship(ctx, c.actor, rel); {
				case err == nil:
					undo = append(undo, func() { _ = r.svc.AddRelationship(context.WithoutCancel(ctx), c.actor, rel) })
				case errors.Is(err, store.ErrNotFound):
					// Not an owner: nothing to remove.
				default:
					return undo, err
				}
			}
		default:
			return undo, immutable("owners: use add or remove to link or unlink owners, not %s", op.Op)
		}
	}
	return undo, nil
}

// ownerIDs reads the user ids of an owners PATCH value: [{"value": id}, ...] or
// one such object.
func ownerIDs(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var ids []string
	for _, e := range list {
		m, _ := e.(map[string]any)
		id, _ := m["value"].(string)
		if id == "" {
			return nil, badValue(`owners: each owner must be an object {"value": "<user id>"}`)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (r devices) delete(c *call, id string, ifRevision int64) error {
	return r.svc.DeleteThing(c.ctx, c.actor, id, ifRevision)
}
