package directory

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// search serves a SearchRequest: entries, then SearchResultDone.
func (ss *session) search(ctx context.Context, id int64, r *searchRequest) bool {
	done := func(code resultCode, why string) bool {
		return ss.respond(id, resultOp(opSearchDone, result{code: code, diagnostic: why}))
	}
	send := func(e entry) bool {
		return ss.respond(id, entryOp(selectAttrs(e, r.attributes), r.typesOnly))
	}
	base, err := ParseDN(r.base)
	if err != nil {
		return done(resultInvalidDNSyntax, err.Error())
	}
	if len(base) == 0 && r.scope == scopeBase {
		if isObjectClassPresent(r.filter) && !send(ss.rootDSE()) {
			return false
		}
		return done(resultSuccess, "")
	}
	if ss.who == nil {
		// Anonymous sessions see the root DSE and nothing else.
		return done(resultInsufficientAccessRights, "bind first: anonymous sessions read only the root DSE")
	}
	if r.scope != scopeBase {
		return done(resultUnwillingToPerform, "only base-object searches are served yet (reading one entry)")
	}
	if !isObjectClassPresent(r.filter) {
		return done(resultUnwillingToPerform, "only the filter (objectClass=*) is served yet")
	}
	if base.Equal(DN{{{Type: "cn", Value: "subschema"}}}) {
		if !send(subschema()) {
			return false
		}
		return done(resultSuccess, "")
	}
	e, err := ss.read(ctx, base)
	switch {
	case errors.Is(err, errNoSuchObject), errors.Is(err, store.ErrNotFound):
		// What the principal may not see does not exist for it.
		return done(resultNoSuchObject, "")
	case err != nil:
		ss.log.Error("ldap: search", "base", r.base, "err", err)
		return done(resultOther, "the directory could not read the entry; try again later")
	}
	if !send(e) {
		return false
	}
	return done(resultSuccess, "")
}

// read returns the entry at dn when the session's principal may see it:
// administrators see everything; a user sees itself and the things it
// owns; a thing sees itself; everyone bound sees the base and its three
// containers. Groups are the administrators'.
func (ss *session) read(ctx context.Context, dn DN) (entry, error) {
	s, who := ss.s, ss.who
	n, err := s.locate(dn)
	if err != nil {
		return entry{}, err
	}
	switch n.kind {
	case "base":
		return s.baseEntry(), nil
	case "ou":
		return s.ouEntry(n.ou), nil
	case "user":
		u, err := s.opts.Store.GetUserByName(ctx, n.name)
		if err != nil {
			return entry{}, err
		}
		if !who.admin && who.userID != u.ID {
			return entry{}, errNoSuchObject
		}
		return s.userEntry(ctx, u)
	case "thing":
		t, err := s.opts.Store.GetThing(ctx, n.name)
		if err != nil {
			return entry{}, err
		}
		if ok, err := ss.mayReadThing(ctx, t.ID); err != nil || !ok {
			return entry{}, cmpErr(err, errNoSuchObject)
		}
		return s.thingEntry(ctx, t)
	case "group":
		if !who.admin {
			return entry{}, errNoSuchObject
		}
		g, err := s.groupByName(ctx, n.name)
		if err != nil {
			return entry{}, err
		}
		return s.groupEntry(ctx, g)
	}
	return entry{}, errNoSuchObject
}

// mayReadThing: administrators, the thing itself and its owners.
func (ss *session) mayReadThing(ctx context.Context, thingID string) (bool, error) {
	who := ss.who
	switch {
	case who.admin || who.thingID == thingID:
		return true, nil
	case who.userID == "":
		return false, nil
	}
	rels, err := ss.s.opts.Store.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner,
		From: &store.Ref{Kind: store.KindUser, ID: who.userID}, To: &store.Ref{Kind: store.KindThing, ID: thingID}})
	return len(rels) > 0, err
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// isObjectClassPresent reports whether f is (objectClass=*), the filter
// clients send to read one entry.
func isObjectClassPresent(f *filter) bool {
	return f.kind == filterPresent && f.attr == "objectclass"
}

// rootDSE is the root DSE (RFC 4512 §5.1); all its attributes but
// objectClass are operational.
func (ss *session) rootDSE() entry {
	return entry{dn: "", attrs: []attribute{
		{"objectClass", []string{"top", "extensibleObject"}},
		{"namingContexts", []string{ss.s.base.String()}},
		{"subschemaSubentry", []string{subschemaDN}},
		{"supportedLDAPVersion", []string{"3"}},
		{"supportedControl", supportedControls},
		{"supportedExtension", []string{oidStartTLS, oidWhoAmI}},
		{"supportedSASLMechanisms", []string{"EXTERNAL"}},
		{"vendorName", []string{"thingid"}},
	}}
}

// selectAttrs keeps the attributes asked for (RFC 4511 §4.5.1.8): none
// listed, or "*", means every user attribute; "+" every operational one
// (RFC 3673); "1.1" alone none; other names (or OIDs) those attributes.
// Attributes without values are never sent.
func selectAttrs(e entry, want []string) entry {
	all := len(want) == 0 || slices.Contains(want, "*")
	ops := slices.Contains(want, "+")
	out := entry{dn: e.dn}
	for _, a := range e.attrs {
		if len(a.values) == 0 {
			continue
		}
		t := attributes[strings.ToLower(a.name)]
		operational := t != nil && t.operational
		named := slices.ContainsFunc(want, func(w string) bool {
			w = strings.ToLower(w)
			return w == strings.ToLower(a.name) || (t != nil && attributes[w] == t)
		})
		if named || (all && !operational) || (ops && operational) {
			out.attrs = append(out.attrs, a)
		}
	}
	return out
}
