package directory

import (
	"context"
	"errors"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// delRequest is a DelRequest (RFC 4511 §4.8): the DN of a leaf entry.
type delRequest struct{ dn string }

// Deleter removes identities through identity, as SCIM's DELETE does.
type Deleter interface {
	DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error
	DeleteThing(ctx context.Context, actor, id string, ifRevision int64) error
	DeleteGroup(ctx context.Context, actor, id string, ifRevision int64) error
}

// delete serves a DelRequest: administrators delete people, devices and
// groups; the base and the three ous are never leaves.
func (ss *session) delete(ctx context.Context, r *delRequest) *ber.Packet {
	answer := func(code resultCode, why string) *ber.Packet {
		return resultOp(opDelResponse, result{code: code, diagnostic: why})
	}
	if ss.who == nil || !ss.who.admin {
		return answer(resultInsufficientAccessRights, "only an administrator may delete entries")
	}
	dn, err := ParseDN(r.dn)
	if err != nil {
		return answer(resultInvalidDNSyntax, "entry: "+err.Error())
	}
	n, err := ss.s.locate(dn)
	if err != nil {
		return answer(resultNoSuchObject, "entry: "+r.dn+" is not in this directory")
	}
	actor := ss.who.actor()
	switch n.kind {
	case "base", "ou":
		return answer(resultNotAllowedOnNonLeaf, "entry: "+r.dn+" holds the directory's entries and is never deleted")
	case "user":
		var u *store.User
		if u, err = ss.s.opts.Store.GetUserByName(ctx, n.name); err == nil {
			err = ss.s.opts.Writer.DeleteUser(ctx, actor, u.ID, 0)
		}
	case "thing":
		err = ss.s.opts.Writer.DeleteThing(ctx, actor, n.name, 0)
	case "group":
		var g *store.Group
		if g, err = ss.s.groupByName(ctx, n.name); err == nil {
			err = ss.s.opts.Writer.DeleteGroup(ctx, actor, g.ID, 0)
		}
	}
	var ve *identity.ValidationError
	switch {
	case err == nil:
		return answer(resultSuccess, "")
	case errors.Is(err, store.ErrNotFound):
		return answer(resultNoSuchObject, "entry: "+r.dn+" does not exist")
	case errors.As(err, &ve):
		return answer(resultUnwillingToPerform, ve.Field+": "+ve.Reason)
	}
	ss.log.Error("ldap: delete", "err", err)
	return answer(resultOther, "the entry could not be deleted; try again later")
}
