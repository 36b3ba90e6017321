package directory

import (
	"context"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// delRequest is a DelRequest (RFC 4511 §4.8): the DN of a leaf entry.
type delRequest struct{ dn string }

func (r *delRequest) target() string { return r.dn }

// delete serves a DelRequest: administrators delete people, devices and
// groups through identity, as SCIM's DELETE does; the base and the
// ous are never leaves, and service accounts are not stored.
func (ss *session) delete(ctx context.Context, r *delRequest) *ber.Packet {
	return resultOp(opDelResponse, ss.writeResult(r.dn, ss.deleteEntry(ctx, r)))
}

func (ss *session) deleteEntry(ctx context.Context, r *delRequest) error {
	if ss.who == nil || !ss.who.admin {
		return refuse(resultInsufficientAccessRights, "only an administrator may delete entries")
	}
	if dn, err := ParseDN(r.dn); err == nil {
		if n, err := ss.s.locate(dn); err == nil && (n.kind == "base" || n.kind == "ou") {
			return refuse(resultNotAllowedOnNonLeaf, "entry: %s holds the directory's entries and is never deleted", r.dn)
		}
	}
	n, _, err := ss.target(r.dn)
	if err != nil {
		return err
	}
	w, actor := ss.s.opts.Writer, ss.who.actor()
	switch n.kind {
	case "user":
		u, err := ss.s.opts.Store.GetUserByName(ctx, n.name)
		if err != nil {
			return err
		}
		return w.DeleteUser(ctx, actor, u.ID, 0)
	case "thing":
		return w.DeleteThing(ctx, actor, n.name, 0)
	}
	g, err := ss.s.groupByName(ctx, n.name)
	if err != nil {
		return err
	}
	return w.DeleteGroup(ctx, actor, g.ID, 0)
}
