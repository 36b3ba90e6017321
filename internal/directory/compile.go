package directory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// A search filter is compiled to a store.Expr per kind of entry and run by
// the store as SQL, like SCIM's filters: nothing is filtered in memory.
// LDAP's filters have three values (RFC 4511 §4.5.1.7: TRUE, FALSE and
// Undefined, for an attribute the entry's class does not know or an
// assertion that cannot be made), so each filter compiles to two
// conditions: when it is TRUE and when it is FALSE; "not" swaps them, and
// Undefined is in neither. An entry is returned when its TRUE condition holds.

// cond is a compiled filter: t holds when it is TRUE, f when FALSE. A nil
// expression is a constant, given by the matching bool.
type cond struct {
	t, f           store.Expr
	isT, isF       bool // the constant value when t or f is nil
	constT, constF bool
}

func constant(v bool) cond { return cond{isT: true, isF: true, constT: v, constF: !v} }

// undefined is neither TRUE nor FALSE.
var undefined = cond{isT: true, isF: true}

// leafCond is a test the store can decide: TRUE where e holds, FALSE where
// it does not.
func leafCond(e store.Expr) cond { return cond{t: e, f: store.Not{X: e}} }

// side is one of the two conditions as (expression, constant, is constant).
type side struct {
	e     store.Expr
	v, is bool
}

func (c cond) tSide() side { return side{c.t, c.constT, c.isT} }
func (c cond) fSide() side { return side{c.f, c.constF, c.isF} }

// and folds constants: false wins, true drops out.
func and(a, b side) side {
	switch {
	case a.is && !a.v, b.is && !b.v:
		return side{v: false, is: true}
	case a.is:
		return b
	case b.is:
		return a
	}
	return side{e: store.And{Left: a.e, Right: b.e}}
}

func or(a, b side) side {
	switch {
	case a.is && a.v, b.is && b.v:
		return side{v: true, is: true}
	case a.is:
		return b
	case b.is:
		return a
	}
	return side{e: store.Or{Left: a.e, Right: b.e}}
}

func fromSides(t, f side) cond {
	return cond{t: t.e, isT: t.is, constT: t.v, f: f.e, isF: f.is, constF: f.v}
}

// schemaOf is how one kind of entry answers a filter's assertions.
type schemaOf interface {
	// assert compiles one non-logical filter (a leaf) for this kind.
	assert(ctx context.Context, f *filter) (cond, error)
}

// compileFilter compiles f for kind k.
func compileFilter(ctx context.Context, k schemaOf, f *filter) (cond, error) {
	switch f.kind {
	case filterAnd, filterOr:
		// RFC 4526: the empty and is TRUE, the empty or FALSE.
		t, fl := side{v: f.kind == filterAnd, is: true}, side{v: f.kind == filterOr, is: true}
		for _, c := range f.children {
			sub, err := compileFilter(ctx, k, c)
			if err != nil {
				return cond{}, err
			}
			if f.kind == filterAnd {
				t, fl = and(t, sub.tSide()), or(fl, sub.fSide())
			} else {
				t, fl = or(t, sub.tSide()), and(fl, sub.fSide())
			}
		}
		return fromSides(t, fl), nil
	case filterNot:
		sub, err := compileFilter(ctx, k, f.children[0])
		if err != nil {
			return cond{}, err
		}
		return fromSides(sub.fSide(), sub.tSide()), nil
	}
	return k.assert(ctx, f)
}

// field is how an LDAP attribute of stored entries maps to the store.
type field struct {
	// names are the store fields the attribute's value is the first
	// non-empty of (cn of a person: displayName, else name.formatted, else
	// userName); one name for most.
	names []string
	kind  valueKind
	// ignoreCase: the attribute's matching ignores case where the store
	// field compares exactly (a String, a free attribute of a thing).
	ignoreCase bool
}

type valueKind int

const (
	textValue  valueKind = iota
	timeValue            // GeneralizedTime, compared as a time
	dnValue              // a DN, resolved to the id it names
	fixedValue           // present on every entry (the naming attribute of containers)
)

// storedKind is people, devices or groups.
type storedKind struct {
	s       *Server
	classes []string
	fields  map[string]field // by lower-case attribute name
	catalog map[string]store.Field
	// resolve turns a DN value of attribute attr into the store's value
	// (an id); ok false: it names nothing that can match.
	resolve func(ctx context.Context, attr string, dn DN) (store.Expr, bool, error)
}

// assert compiles one leaf for a stored kind.
func (k *storedKind) assert(ctx context.Context, f *filter) (cond, error) {
	attr := f.attr
	if f.kind == filterExtensible {
		// Extensible match where it means something: an attribute, and no
		// rule or the attribute's own equality rule; dnAttributes and rules
		// the directory does not apply are Undefined.
		if f.attr == "" || f.dnAttrs || (f.rule != "" && !k.isEqualityRule(f.attr, f.rule)) {
			return undefined, nil
		}
	}
	if t := attributes[attr]; t != nil {
		attr = strings.ToLower(t.names[0])
	}
	if attr == "objectclass" {
		return k.objectClass(f), nil
	}
	fd, ok := k.fields[attr]
	if !ok {
		return undefined, nil // not an attribute of this kind's classes
	}
	if f.kind == filterPresent {
		if fd.kind == fixedValue {
			return constant(true), nil
		}
		if strings.HasPrefix(fd.names[0], store.AttributePrefix) {
			// A free attribute is present when it is text and not empty
			// (a number is not a description): greater than "" as a string.
			return leafCond(store.Compare{Field: fd.names[0], Op: store.OpGt, Value: "", IgnoreCase: true}), nil
		}
		var e store.Expr
		for _, n := range fd.names {
			e = orExpr(e, store.Present{Field: n})
		}
		return leafCond(e), nil
	}
	switch fd.kind {
	case dnValue:
		if f.kind != filterEqual && f.kind != filterApprox && f.kind != filterExtensible {
			return undefined, nil
		}
		dn, err := ParseDN(f.value)
		if err != nil {
			return undefined, nil
		}
		e, ok, err := k.resolve(ctx, attr, dn)
		if err != nil {
			return cond{}, err
		}
		if !ok {
			return constant(false), nil
		}
		return leafCond(e), nil
	case timeValue:
		tm, err := parseGeneralizedTime(f.value)
		if err != nil || f.kind == filterSubstrings {
			return undefined, nil
		}
		return leafCond(store.Compare{Field: fd.names[0], Op: op(f.kind), Value: tm}), nil
	}
	if hasNUL(f.value, f.initial, f.final) || hasNUL(f.any...) {
		return undefined, nil // no stored value holds a NUL
	}
	mk := func(name string) store.Expr {
		if f.kind == filterSubstrings {
			return store.Substrings{Field: name, Initial: f.initial, Any: f.any, Final: f.final, IgnoreCase: fd.ignoreCase}
		}
		return store.Compare{Field: name, Op: op(f.kind), Value: f.value, IgnoreCase: fd.ignoreCase}
	}
	return leafCond(firstOf(fd.names, mk)), nil
}

func hasNUL(vs ...string) bool {
	return slices.ContainsFunc(vs, func(v string) bool { return strings.IndexByte(v, 0) >= 0 })
}

// firstOf tests the first non-empty of names with mk: mk(n0), or n0 absent
// and mk(n1), and so on.
func firstOf(names []string, mk func(string) store.Expr) store.Expr {
	if len(names) == 1 {
		return mk(names[0])
	}
	return store.Or{Left: mk(names[0]), Right: store.And{Left: store.Not{X: store.Present{Field: names[0]}}, Right: firstOf(names[1:], mk)}}
}

func orExpr(a, b store.Expr) store.Expr {
	if a == nil {
		return b
	}
	return store.Or{Left: a, Right: b}
}

// op is the store's operator for a comparison filter; approximate match is
// equality (RFC 4511 §4.5.1.7.6 leaves it to the server).
func op(k filterKind) store.Op {
	switch k {
	case filterGreater:
		return store.OpGe
	case filterLess:
		return store.OpLe
	}
	return store.OpEq
}

func (k *storedKind) isEqualityRule(attr, rule string) bool {
	t := attributes[attr]
	return t != nil && (strings.EqualFold(rule, equalityOf(t)) || rule == t.oid)
}

// objectClass is TRUE for the kind's classes, FALSE for others: a
// constant, since every entry of a kind has the same classes.
func (k *storedKind) objectClass(f *filter) cond {
	switch f.kind {
	case filterPresent:
		return constant(true)
	case filterEqual, filterApprox:
		return constant(slices.ContainsFunc(k.classes, func(c string) bool { return strings.EqualFold(c, f.value) }))
	case filterExtensible:
		if f.rule == "" || strings.EqualFold(f.rule, "objectIdentifierMatch") {
			return constant(slices.ContainsFunc(k.classes, func(c string) bool { return strings.EqualFold(c, f.value) }))
		}
	}
	return undefined
}

// parseGeneralizedTime reads the forms of RFC 4517 §3.3.13 that clients
// send: YYYYMMDDHHMMSS, optional fraction, Z or an offset.
func parseGeneralizedTime(s string) (time.Time, error) {
	for _, layout := range []string{"20060102150405Z0700", "20060102150405.999999999Z0700", "20060102150405Z", "20060102150405.999999999Z", "200601021504Z", "2006010215Z"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a GeneralizedTime")
}

// people, devices and groups are the three stored kinds of s.
func (s *Server) kinds() (people, devices, groups *storedKind) {
	common := map[string]field{
		"entryuuid":       {names: []string{"id"}},
		"createtimestamp": {names: []string{"meta.created"}, kind: timeValue},
		"modifytimestamp": {names: []string{"meta.lastModified"}, kind: timeValue},
	}
	with := func(m map[string]field) map[string]field {
		for k, v := range common {
			m[k] = v
		}
		return m
	}
	people = &storedKind{s: s, catalog: store.UserFields, classes: []string{"top", "person", "organizationalPerson", "inetOrgPerson"}, fields: with(map[string]field{
		"uid":               {names: []string{"userName"}},
		"cn":                {names: []string{"displayName", "name.formatted", "userName"}},
		"sn":                {names: []string{"name.familyName", "displayName", "name.formatted", "userName"}},
		"givenname":         {names: []string{"name.givenName"}},
		"displayname":       {names: []string{"displayName"}},
		"mail":              {names: []string{"emails"}},
		"telephonenumber":   {names: []string{"phoneNumbers"}},
		"preferredlanguage": {names: []string{"locale"}, ignoreCase: true},
		"memberof":          {names: []string{"groups"}, kind: dnValue},
	}), resolve: s.resolveGroup}
	devices = &storedKind{s: s, catalog: store.ThingFields, classes: []string{"top", "device", "thingidDevice"}, fields: with(map[string]field{
		"cn":                     {names: []string{"id"}},
		"displayname":            {names: []string{"displayName"}},
		"serialnumber":           {names: []string{"serialNumber"}},
		"l":                      {names: []string{"location"}, ignoreCase: true},
		"description":            {names: []string{store.AttributePrefix + "description"}, ignoreCase: true},
		"owner":                  {names: []string{"owners"}, kind: dnValue},
		"thingidmacaddress":      {names: []string{"macAddresses"}},
		"thingidmodel":           {names: []string{"model"}},
		"thingidmanufacturer":    {names: []string{"manufacturer"}},
		"thingidfirmwareversion": {names: []string{"firmwareVersion"}},
		"thingidstatus":          {names: []string{"status"}},
		"thingidthingtype":       {names: []string{"thingType"}},
		"memberof":               {names: []string{"groups"}, kind: dnValue},
	}), resolve: func(ctx context.Context, attr string, dn DN) (store.Expr, bool, error) {
		if attr == "owner" {
			return s.resolveUser(ctx, "owners", dn)
		}
		return s.resolveGroup(ctx, attr, dn)
	}}
	groups = &storedKind{s: s, catalog: store.GroupFields, classes: []string{"top", "groupOfNames"}, fields: with(map[string]field{
		"cn":     {names: []string{"displayName"}},
		"member": {names: []string{"members"}, kind: dnValue},
	}), resolve: s.resolveMember}
	return people, devices, groups
}

// resolveGroup: memberOf=<group DN> is membership of that group's id.
func (s *Server) resolveGroup(ctx context.Context, _ string, dn DN) (store.Expr, bool, error) {
	n, err := s.locate(dn)
	if err != nil || n.kind != "group" {
		return nil, false, nil
	}
	g, err := s.groupByName(ctx, n.name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return store.Compare{Field: "groups", Op: store.OpEq, Value: g.ID}, true, nil
}

// resolveUser: field=<person DN> is that user's id in field.
func (s *Server) resolveUser(ctx context.Context, fieldName string, dn DN) (store.Expr, bool, error) {
	n, err := s.locate(dn)
	if err != nil || n.kind != "user" {
		return nil, false, nil
	}
	u, err := s.opts.Store.GetUserByName(ctx, n.name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return store.Compare{Field: fieldName, Op: store.OpEq, Value: u.ID}, true, nil
}

// resolveMember: member=<DN> is a member of that kind and id.
func (s *Server) resolveMember(ctx context.Context, _ string, dn DN) (store.Expr, bool, error) {
	n, err := s.locate(dn)
	if err != nil {
		return nil, false, nil
	}
	var ref store.Ref
	switch n.kind {
	case "user":
		u, err := s.opts.Store.GetUserByName(ctx, n.name)
		if err != nil {
			return nil, false, ignoreNotFound(err)
		}
		ref = store.Ref{Kind: store.KindUser, ID: u.ID}
	case "thing":
		ref = store.Ref{Kind: store.KindThing, ID: n.name}
	case "group":
		g, err := s.groupByName(ctx, n.name)
		if err != nil {
			return nil, false, ignoreNotFound(err)
		}
		ref = store.Ref{Kind: store.KindGroup, ID: g.ID}
	default:
		return nil, false, nil
	}
	return store.Any{Field: "members", Where: store.And{
		Left:  store.Compare{Field: "value", Op: store.OpEq, Value: ref.ID},
		Right: store.Compare{Field: "type", Op: store.OpEq, Value: string(ref.Kind)},
	}}, true, nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// container is a constant entry (the base, an ou): its assertions are
// decided on its few fixed values, with no store to ask.
type container struct{ e entry }

func (c container) assert(_ context.Context, f *filter) (cond, error) {
	var vals []string
	for _, a := range c.e.attrs {
		if strings.EqualFold(a.name, f.attr) {
			vals = a.values
		}
	}
	if vals == nil {
		return undefined, nil
	}
	switch f.kind {
	case filterPresent:
		return constant(true), nil
	case filterEqual, filterApprox:
		return constant(slices.ContainsFunc(vals, func(v string) bool { return strings.EqualFold(v, f.value) })), nil
	}
	return undefined, nil
}
