package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// Writer is what the directory changes identities through
// (*identity.Service), so that validation, the password policy, the audit
// log and the events apply exactly as for SCIM and the web pages.
type Writer interface {
	HashPassword(pw string, u *store.User) (string, error)
	CreateUser(ctx context.Context, actor string, u *store.User, pw string) (*store.User, error)
	UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error)
	ResetPassword(ctx context.Context, actor, id, pw string) (*store.User, error)
	DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error
	DeleteThing(ctx context.Context, actor, id string, ifRevision int64) error
	CreateGroup(ctx context.Context, actor string, g *store.Group) (*store.Group, error)
	UpdateGroup(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Group) error) (*store.Group, error)
	DeleteGroup(ctx context.Context, actor, id string, ifRevision int64) error
	// WithTx changes a device, its attributes and its owners, in one
	// transaction.
	WithTx(ctx context.Context, actor string, fn func(tx *identity.Tx) error) error
}

// Who may write (the rules are tried to break in write_test.go):
//
//   - an administrator adds, modifies, renames and deletes people and
//     groups, and modifies the writable attributes of devices;
//   - a user modifies its own entry's self-service attributes (those marked
//     self in personAttrs), never its uid, its groups or anyone else;
//   - things and service accounts write nothing.

// addRequest is an AddRequest (RFC 4511 §4.7).
type addRequest struct {
	dn    string
	attrs []rawAttribute
}

// modifyRequest is a ModifyRequest (RFC 4511 §4.6).
type modifyRequest struct {
	dn      string
	changes []modification
}

// modification is one change of a ModifyRequest.
type modification struct {
	op   int64 // modAdd, modDelete, modReplace or modIncrement
	attr rawAttribute
}

// Operations of a change (RFC 4511 §4.6, RFC 4525).
const (
	modAdd       = 0
	modDelete    = 1
	modReplace   = 2
	modIncrement = 3
)

// modDNRequest is a ModifyDNRequest (RFC 4511 §4.9).
type modDNRequest struct {
	dn, newRDN     string
	deleteOldRDN   bool
	newSuperior    string
	hasNewSuperior bool
}

// rawAttribute is an attribute as a client sent it: a type and values
// that are not yet known to be UTF-8.
type rawAttribute struct {
	name   string
	values [][]byte
}

func (r *addRequest) target() string    { return r.dn }
func (r *modifyRequest) target() string { return r.dn }
func (r *modDNRequest) target() string  { return r.dn }

func decodeAdd(p *ber.Packet) (*addRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 2 {
		return nil, fmt.Errorf("%w: AddRequest has an entry and attributes", errFraming)
	}
	dn, err := text(p.Children[0], ber.ClassUniversal, ber.TagOctetString)
	if err != nil {
		return nil, fmt.Errorf("AddRequest entry: %w", err)
	}
	list := p.Children[1]
	if list.ClassType != ber.ClassUniversal || list.Tag != ber.TagSequence || list.TagType != ber.TypeConstructed {
		return nil, fmt.Errorf("%w: AddRequest attributes are not a SEQUENCE", errFraming)
	}
	r := &addRequest{dn: dn}
	for _, c := range list.Children {
		a, err := decodePartialAttribute(c)
		if err != nil {
			return nil, fmt.Errorf("AddRequest: %w", err)
		}
		r.attrs = append(r.attrs, a)
	}
	return r, nil
}

func decodeModify(p *ber.Packet) (*modifyRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 2 {
		return nil, fmt.Errorf("%w: ModifyRequest has an object and changes", errFraming)
	}
	dn, err := text(p.Children[0], ber.ClassUniversal, ber.TagOctetString)
	if err != nil {
		return nil, fmt.Errorf("ModifyRequest object: %w", err)
	}
	list := p.Children[1]
	if list.ClassType != ber.ClassUniversal || list.Tag != ber.TagSequence || list.TagType != ber.TypeConstructed {
		return nil, fmt.Errorf("%w: ModifyRequest changes are not a SEQUENCE", errFraming)
	}
	r := &modifyRequest{dn: dn}
	for _, c := range list.Children {
		if c.ClassType != ber.ClassUniversal || c.Tag != ber.TagSequence || c.TagType != ber.TypeConstructed || len(c.Children) != 2 {
			return nil, fmt.Errorf("%w: a change is a SEQUENCE of an operation and a modification", errFraming)
		}
		op, err := integer(c.Children[0], ber.ClassUniversal, ber.TagEnumerated)
		if err != nil {
			return nil, fmt.Errorf("change operation: %w", err)
		}
		if op < modAdd || op > modIncrement {
			return nil, fmt.Errorf("%w: change operation %d is not add, delete, replace or increment", errFraming, op)
		}
		a, err := decodePartialAttribute(c.Children[1])
		if err != nil {
			return nil, fmt.Errorf("ModifyRequest: %w", err)
		}
		r.changes = append(r.changes, modification{op: op, attr: a})
	}
	return r, nil
}

func decodeModDN(p *ber.Packet) (*modDNRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) < 3 || len(p.Children) > 4 {
		return nil, fmt.Errorf("%w: ModifyDNRequest has an entry, a newrdn, deleteoldrdn and perhaps a newSuperior", errFraming)
	}
	c := p.Children
	r := &modDNRequest{}
	var err error
	if r.dn, err = text(c[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("ModifyDNRequest entry: %w", err)
	}
	if r.newRDN, err = text(c[1], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("ModifyDNRequest newrdn: %w", err)
	}
	if c[2].ClassType != ber.ClassUniversal || c[2].Tag != ber.TagBoolean || c[2].TagType != ber.TypePrimitive || c[2].Data.Len() != 1 {
		return nil, fmt.Errorf("%w: deleteoldrdn is not a BOOLEAN", errFraming)
	}
	r.deleteOldRDN = c[2].Data.Bytes()[0] != 0
	if len(c) == 4 {
		if r.newSuperior, err = text(c[3], ber.ClassContext, 0); err != nil {
			return nil, fmt.Errorf("ModifyDNRequest newSuperior: %w", err)
		}
		r.hasNewSuperior = true
	}
	return r, nil
}

// decodePartialAttribute decodes a PartialAttribute (RFC 4511 §4.1.7).
func decodePartialAttribute(p *ber.Packet) (rawAttribute, error) {
	if p.ClassType != ber.ClassUniversal || p.Tag != ber.TagSequence || p.TagType != ber.TypeConstructed || len(p.Children) != 2 {
		return rawAttribute{}, fmt.Errorf("%w: an attribute is a SEQUENCE of a type and values", errFraming)
	}
	name, err := text(p.Children[0], ber.ClassUniversal, ber.TagOctetString)
	if err != nil {
		return rawAttribute{}, fmt.Errorf("attribute type: %w", err)
	}
	set := p.Children[1]
	if set.ClassType != ber.ClassUniversal || set.Tag != ber.TagSet || set.TagType != ber.TypeConstructed {
		return rawAttribute{}, fmt.Errorf("%w: the values of %s are not a SET", errFraming, name)
	}
	a := rawAttribute{name: name}
	for _, v := range set.Children {
		b, err := octets(v, ber.ClassUniversal, ber.TagOctetString)
		if err != nil {
			return rawAttribute{}, fmt.Errorf("a value of %s: %w", name, err)
		}
		a.values = append(a.values, b)
	}
	return a, nil
}

// ldapError is a refusal with its result code and a diagnostic naming the
// attribute or the entry at fault.
type ldapError struct {
	code resultCode
	why  string
}

func (e *ldapError) Error() string { return e.why }

func refuse(code resultCode, format string, args ...any) error {
	return &ldapError{code: code, why: fmt.Sprintf(format, args...)}
}

// ldapNames are the LDAP attributes of identity's field names, for the
// diagnostics of its validation errors.
var ldapNames = map[string]string{
	"userName": "uid", "displayName": "displayName", "name.familyName": "sn", "name.givenName": "givenName",
	"emails": "mail", "phoneNumbers": "telephoneNumber", "locale": "preferredLanguage", "password": "userPassword",
	"location": "l", "attributes": "description", "members": "member", "members.value": "member", "from": "owner",
}

// writeResult is the LDAPResult of a write to the entry named dn.
func (ss *session) writeResult(dn string, err error) result {
	var le *ldapError
	var ve *identity.ValidationError
	switch {
	case err == nil:
		return result{code: resultSuccess}
	case errors.As(err, &le):
		return result{code: le.code, diagnostic: le.why}
	case errors.As(err, &ve):
		field := ve.Field
		if n, ok := ldapNames[field]; ok {
			field = n
		}
		return result{code: resultConstraintViolation, diagnostic: field + ": " + ve.Reason()}
	case errors.Is(err, store.ErrEmailTaken):
		return result{code: resultConstraintViolation, diagnostic: "mail: another user has verified this address"}
	case errors.Is(err, store.ErrConflict):
		return result{code: resultEntryAlreadyExists, diagnostic: "entry: " + dn + " exists already"}
	case errors.Is(err, store.ErrNotFound):
		return result{code: resultNoSuchObject, diagnostic: "entry: " + dn + " does not exist"}
	}
	ss.log.Error("ldap: write", "dn", dn, "err", err)
	return result{code: resultOther, diagnostic: "the entry could not be changed; try again later"}
}

// serviceReadOnly says why a service account's entry is not written.
const serviceReadOnly = "a service account is an OAuth client listed in ldap.serviceAccounts: change the client with thingid clients, and the list in the configuration"

// target locates the stored entry a write names, after checking that the
// session is bound as a user (only users write).
func (ss *session) target(dnText string) (node, DN, error) {
	if ss.who == nil || ss.who.userID == "" {
		return node{}, nil, refuse(resultInsufficientAccessRights, "only a user bound with its password may change entries")
	}
	dn, err := ParseDN(dnText)
	if err != nil {
		return node{}, nil, refuse(resultInvalidDNSyntax, "entry: %v", err)
	}
	n, err := ss.s.locate(dn)
	switch {
	case err != nil:
		return node{}, nil, refuse(resultNoSuchObject, "entry: %s is not in this directory", dnText)
	case n.kind == "base" || n.kind == "ou":
		return node{}, nil, refuse(resultUnwillingToPerform, "entry: %s is one of the directory's containers, which do not change", dnText)
	case n.kind == "service":
		return node{}, nil, refuse(resultUnwillingToPerform, "entry: %s", serviceReadOnly)
	}
	return n, dn, nil
}

func (ss *session) requireAdmin(what string) error {
	if !ss.who.admin {
		return refuse(resultInsufficientAccessRights, "only an administrator may %s", what)
	}
	return nil
}

// add serves an AddRequest: an administrator adds a person or a group.
func (ss *session) add(ctx context.Context, r *addRequest) *ber.Packet {
	return resultOp(opAddResponse, ss.writeResult(r.dn, ss.addEntry(ctx, r)))
}

func (ss *session) addEntry(ctx context.Context, r *addRequest) error {
	if ss.who == nil || ss.who.userID == "" {
		return refuse(resultInsufficientAccessRights, "only an administrator may add entries")
	}
	if err := ss.requireAdmin("add entries"); err != nil {
		return err
	}
	dn, err := ParseDN(r.dn)
	if err != nil {
		return refuse(resultInvalidDNSyntax, "entry: %v", err)
	}
	n, err := ss.s.locate(dn)
	switch {
	case err != nil:
		return refuse(resultNoSuchObject, "entry: %s is not below ou=people or ou=groups of %s", r.dn, ss.s.base)
	case n.kind == "base" || n.kind == "ou":
		return refuse(resultEntryAlreadyExists, "entry: %s exists already", r.dn)
	case n.kind == "thing":
		return refuse(resultUnwillingToPerform, "entry: a device's cn is the id the store gives it: register devices through SCIM or the factory, then change them here")
	case n.kind == "service":
		return refuse(resultUnwillingToPerform, "entry: %s", serviceReadOnly)
	}
	attrs, err := canonical(r.attrs)
	if err != nil {
		return err
	}
	naming := dn[0][0].Type
	if err := checkClasses(attrs, n.kind); err != nil {
		return err
	}
	if vs, ok := attrs.get(naming); ok && (len(vs) != 1 || !strings.EqualFold(vs[0], n.name)) {
		return refuse(resultNamingViolation, "%s: %q disagrees with the entry's RDN %s=%s", naming, strings.Join(vs, ", "), naming, n.name)
	}
	actor := ss.who.actor()
	if n.kind == "group" {
		g := &store.Group{DisplayName: n.name}
		for _, a := range attrs {
			switch a.name {
			case "objectClass", "cn":
			case "member":
				refs, err := ss.s.members(ctx, a.values)
				if err != nil {
					return err
				}
				g.Members = refs
			default:
				return notKept(a.name, "a group", groupWritable)
			}
		}
		_, err := ss.s.opts.Writer.CreateGroup(ctx, actor, g)
		return err
	}
	u := &store.User{UserName: n.name}
	var pw string
	for _, a := range attrs {
		switch a.name {
		case "objectClass", "uid":
			continue
		case "userPassword":
			if len(a.values) != 1 {
				return refuse(resultConstraintViolation, "userPassword: one password")
			}
			if pw = a.values[0]; hashedPassword(pw) {
				return refuse(resultConstraintViolation, "userPassword: a hashed value ({SSHA}, {CRYPT}...) is not taken; send the password itself, over TLS, and the directory hashes it")
			}
			continue
		}
		f, err := personAttr(a.name, false)
		if err != nil {
			return err
		}
		if f.single && len(a.values) > 1 {
			return refuse(resultConstraintViolation, "%s: single-valued", a.name)
		}
		f.set(u, a.values)
	}
	for _, must := range []string{"cn", "sn"} {
		if _, ok := attrs.get(must); !ok {
			return refuse(resultObjectClassViolation, "%s: required by the person class", must)
		}
	}
	_, err = ss.s.opts.Writer.CreateUser(ctx, actor, u, pw)
	return err
}

// hashedPassword reports whether pw looks like an RFC 2307 hashed value.
func hashedPassword(pw string) bool {
	end := strings.IndexByte(pw, '}')
	return strings.HasPrefix(pw, "{") && end > 1 && !strings.ContainsAny(pw[1:end], " {")
}

// checkClasses requires the entry's objectClass to name its structural
// class and nothing the directory would not keep.
func checkClasses(attrs attrList, kind string) error {
	allowed := map[string][]string{
		"user":  {"top", "person", "organizationalPerson", "inetOrgPerson"},
		"group": {"top", "groupOfNames"},
	}[kind]
	structural := allowed[len(allowed)-1]
	classes, ok := attrs.get("objectClass")
	if !ok {
		return refuse(resultObjectClassViolation, "objectClass: required (%s)", structural)
	}
	found := false
	for _, c := range classes {
		i := slices.IndexFunc(allowed, func(a string) bool { return strings.EqualFold(a, c) })
		if i < 0 {
			return refuse(resultObjectClassViolation, "objectClass: %s is not kept here; an entry of this ou is %s", c, strings.Join(allowed, ", "))
		}
		found = found || allowed[i] == structural
	}
	if !found {
		return refuse(resultObjectClassViolation, "objectClass: %s is required here", structural)
	}
	return nil
}

// attrList is a request's attributes by their canonical names, in order.
type attrList []attribute

func (l attrList) get(name string) ([]string, bool) {
	for _, a := range l {
		if a.name == name {
			return a.values, true
		}
	}
	return nil, false
}

// canonical names a request's attributes by their schema names and checks
// their values are UTF-8 and listed once.
func canonical(raw []rawAttribute) (attrList, error) {
	var out attrList
	for _, r := range raw {
		a, err := canonicalAttr(r)
		if err != nil {
			return nil, err
		}
		if _, dup := out.get(a.name); dup {
			return nil, refuse(resultAttributeOrValueExists, "%s: listed twice", a.name)
		}
		if len(a.values) == 0 {
			return nil, refuse(resultConstraintViolation, "%s: no values", a.name)
		}
		out = append(out, a)
	}
	return out, nil
}

func canonicalAttr(r rawAttribute) (attribute, error) {
	if strings.Contains(r.name, ";") {
		return attribute{}, refuse(resultUnwillingToPerform, "%s: attribute options are not supported", r.name)
	}
	t := attributes[strings.ToLower(r.name)]
	if t == nil {
		return attribute{}, refuse(resultUndefinedAttributeType, "%s: no such attribute type in this directory's schema (cn=Subschema)", r.name)
	}
	if t.noUserMod {
		what := "is operational"
		if t.names[0] == "memberOf" {
			what = "is operational: change the group's member attribute instead"
		}
		return attribute{}, refuse(resultConstraintViolation, "%s: %s (NO-USER-MODIFICATION)", t.names[0], what)
	}
	a := attribute{name: t.names[0]}
	seen := map[string]bool{}
	for _, v := range r.values {
		if !utf8.Valid(v) {
			return attribute{}, refuse(resultInvalidAttributeSyntax, "%s: a value is not UTF-8", a.name)
		}
		k := strings.ToLower(string(v))
		if seen[k] {
			return attribute{}, refuse(resultAttributeOrValueExists, "%s: the value %q is listed twice", a.name, v)
		}
		seen[k] = true
		a.values = append(a.values, string(v))
	}
	return a, nil
}

// writable is one writable attribute of a stored kind.
type writable[T any] struct {
	self   bool // a user may change it on its own entry
	single bool
	get    func(T) []string
	set    func(T, []string)
}

// personAttrs are the attributes of a person that writes set. cn and
// displayName are one value here: SCIM's displayName.
var personAttrs = map[string]writable[*store.User]{
	"cn": {self: true, single: true,
		get: func(u *store.User) []string { return nonEmpty(first(u.DisplayName, u.Name.Formatted, u.UserName)) },
		set: func(u *store.User, v []string) { u.DisplayName = one(v) }},
	"displayName": {self: true, single: true,
		get: func(u *store.User) []string { return nonEmpty(u.DisplayName) },
		set: func(u *store.User, v []string) { u.DisplayName = one(v) }},
	"sn": {self: true, single: true,
		get: func(u *store.User) []string {
			return nonEmpty(first(u.Name.FamilyName, u.DisplayName, u.Name.Formatted, u.UserName))
		},
		set: func(u *store.User, v []string) { u.Name.FamilyName = one(v) }},
	"givenName": {self: true, single: true,
		get: func(u *store.User) []string { return nonEmpty(u.Name.GivenName) },
		set: func(u *store.User, v []string) { u.Name.GivenName = one(v) }},
	"telephoneNumber": {self: true,
		get: func(u *store.User) []string { return values(u.PhoneNumbers) },
		set: func(u *store.User, v []string) { u.PhoneNumbers = multi(u.PhoneNumbers, v) }},
	"preferredLanguage": {self: true, single: true,
		get: func(u *store.User) []string { return nonEmpty(u.Locale) },
		set: func(u *store.User, v []string) { u.Locale = one(v) }},
	// The primary address vouches for the user once verified: a user changes
	// it on /account, where the new address is verified first.
	"mail": {
		get: func(u *store.User) []string { return values(u.Emails) },
		set: func(u *store.User, v []string) { u.Emails = multi(u.Emails, v) }},
}

// thingAttrs are the attributes of a device that writes set; its owners
// are relationships, changed apart (modifyThing).
var thingAttrs = map[string]writable[*store.Thing]{
	"l": {single: true,
		get: func(t *store.Thing) []string { return nonEmpty(t.Location) },
		set: func(t *store.Thing, v []string) { t.Location = one(v) }},
	"description": {single: true,
		get: func(t *store.Thing) []string { return nonEmpty(thingDescription(t)) },
		set: func(t *store.Thing, v []string) {
			if len(v) == 0 {
				delete(t.Attributes, "description")
				return
			}
			if t.Attributes == nil {
				t.Attributes = map[string]any{}
			}
			t.Attributes["description"] = v[0]
		}},
}

// thingDescription is a device's description: its free-form attribute of
// that name (SCIM's attributes.description), when it is a string.
func thingDescription(t *store.Thing) string {
	s, _ := t.Attributes["description"].(string)
	return s
}

const (
	personWritable = "cn, displayName, sn, givenName, mail, telephoneNumber, preferredLanguage; uid by Modify DN; userPassword by Password Modify"
	thingWritable  = "l, description, owner"
	groupWritable  = "member; cn by Modify DN"
)

func one(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// multi is vs as multi-valued attributes, keeping what old knew of each
// value still there (type, primary).
func multi(old []store.MultiValue, vs []string) []store.MultiValue {
	out := make([]store.MultiValue, 0, len(vs))
	for _, v := range vs {
		i := slices.IndexFunc(old, func(m store.MultiValue) bool { return strings.EqualFold(m.Value, v) })
		if i >= 0 {
			out = append(out, old[i])
		} else {
			out = append(out, store.MultiValue{Value: v})
		}
	}
	return out
}

func notKept(name, what, writable string) error {
	return refuse(resultObjectClassViolation, "%s: not an attribute of %s that can be written over LDAP (writable: %s)", name, what, writable)
}

// personAttr is the writable attribute name of a person; a modification
// of uid or userPassword is pointed to the operation that does it.
func personAttr(name string, modify bool) (writable[*store.User], error) {
	switch {
	case name == "objectClass" && modify:
		return writable[*store.User]{}, refuse(resultObjectClassViolation, "objectClass: the class of an entry does not change")
	case name == "uid" && modify:
		return writable[*store.User]{}, refuse(resultNotAllowedOnRDN, "uid: names the entry; rename it with Modify DN (ldapmodrdn)")
	case name == "userPassword" && modify:
		return writable[*store.User]{}, refuse(resultUnwillingToPerform, "userPassword: change a password with the Password Modify operation (ldappasswd)")
	}
	f, ok := personAttrs[name]
	if !ok {
		return f, notKept(name, "a person", personWritable)
	}
	return f, nil
}

// apply makes one change on the values cur of attribute m.attr.name
// (RFC 4511 §4.6), comparing values with equal.
func apply(m modification, vals []string, cur []string, single bool, equal func(a, b string) bool) ([]string, error) {
	name := m.attr.name
	has := func(v string) bool { return slices.ContainsFunc(cur, func(c string) bool { return equal(c, v) }) }
	var out []string
	switch m.op {
	case modAdd:
		if len(vals) == 0 {
			return nil, refuse(resultProtocolError, "%s: add needs values", name)
		}
		out = slices.Clone(cur)
		for _, v := range vals {
			if has(v) {
				return nil, refuse(resultAttributeOrValueExists, "%s: has the value %q already", name, v)
			}
			out = append(out, v)
		}
	case modDelete:
		if len(cur) == 0 {
			return nil, refuse(resultNoSuchAttribute, "%s: the entry has no such attribute", name)
		}
		if len(vals) == 0 {
			return nil, nil
		}
		for _, v := range vals {
			if !has(v) {
				return nil, refuse(resultNoSuchAttribute, "%s: the entry has no value %q", name, v)
			}
		}
		for _, c := range cur {
			if !slices.ContainsFunc(vals, func(v string) bool { return equal(c, v) }) {
				out = append(out, c)
			}
		}
	case modReplace:
		out = vals
	default:
		return nil, refuse(resultUnwillingToPerform, "%s: increment is not supported", name)
	}
	if single && len(out) > 1 {
		return nil, refuse(resultConstraintViolation, "%s: single-valued", name)
	}
	return out, nil
}

// modify serves a ModifyRequest.
func (ss *session) modify(ctx context.Context, r *modifyRequest) *ber.Packet {
	return resultOp(opModifyResponse, ss.writeResult(r.dn, ss.modifyEntry(ctx, r)))
}

func (ss *session) modifyEntry(ctx context.Context, r *modifyRequest) error {
	n, _, err := ss.target(r.dn)
	if err != nil {
		return err
	}
	mods := make([]modification, 0, len(r.changes))
	vals := make([][]string, 0, len(r.changes))
	for _, m := range r.changes {
		a, err := canonicalAttr(m.attr)
		if err != nil {
			return err
		}
		m.attr.name = a.name
		mods = append(mods, m)
		vals = append(vals, a.values)
	}
	switch n.kind {
	case "user":
		return ss.modifyUser(ctx, n, mods, vals)
	case "thing":
		if err := ss.requireAdmin("change a device"); err != nil {
			return err
		}
		return ss.modifyThing(ctx, n, mods, vals)
	}
	if err := ss.requireAdmin("change a group"); err != nil {
		return err
	}
	return ss.modifyGroup(ctx, n, mods, vals)
}

func (ss *session) modifyUser(ctx context.Context, n node, mods []modification, vals [][]string) error {
	u, err := ss.s.opts.Store.GetUserByName(ctx, n.name)
	mine := err == nil && u.ID == ss.who.userID
	if !ss.who.admin && !mine {
		// Whether another user exists is none of a user's business.
		return refuse(resultInsufficientAccessRights, "a user may change only its own entry")
	}
	if err != nil {
		return err
	}
	fields := make([]writable[*store.User], len(mods))
	for i, m := range mods {
		if fields[i], err = personAttr(m.attr.name, true); err != nil {
			return err
		}
		if !ss.who.admin && !fields[i].self {
			return refuse(resultInsufficientAccessRights, "%s: only an administrator may change it (yours: cn, displayName, sn, givenName, telephoneNumber, preferredLanguage)", m.attr.name)
		}
	}
	_, err = ss.s.opts.Writer.UpdateUser(ctx, ss.who.actor(), u.ID, 0, func(u *store.User) error {
		for i, m := range mods {
			f := fields[i]
			out, err := apply(m, vals[i], f.get(u), f.single, strings.EqualFold)
			if err != nil {
				return err
			}
			f.set(u, out)
		}
		return nil
	})
	return err
}

// modifyThing changes a device's attributes and owners in one
// transaction: either every change of the request is made, audited and
// published, or none is.
func (ss *session) modifyThing(ctx context.Context, n node, mods []modification, vals [][]string) error {
	thing := store.Ref{Kind: store.KindThing, ID: n.name}
	var attrMods, ownerMods []int
	for i, m := range mods {
		switch _, ok := thingAttrs[m.attr.name]; {
		case m.attr.name == "owner":
			ownerMods = append(ownerMods, i)
		case m.attr.name == "cn":
			return refuse(resultNotAllowedOnRDN, "cn: a device's cn is its id, which does not change")
		case ok:
			attrMods = append(attrMods, i)
		default:
			return notKept(m.attr.name, "a device", thingWritable)
		}
	}
	// The owners' DNs are resolved first: a DN that names no person
	// changes nothing.
	ownerIDs := make([][]string, len(mods))
	for _, i := range ownerMods {
		ids, err := ss.s.owners(ctx, vals[i])
		if err != nil {
			return err
		}
		ownerIDs[i] = ids
	}
	return ss.s.opts.Writer.WithTx(ctx, ss.who.actor(), func(tx *identity.Tx) error {
		_, err := tx.UpdateThing(ctx, n.name, 0, func(t *store.Thing) error {
			for _, i := range attrMods {
				f := thingAttrs[mods[i].attr.name]
				out, err := apply(mods[i], vals[i], f.get(t), f.single, strings.EqualFold)
				if err != nil {
					return err
				}
				f.set(t, out)
			}
			return nil
		})
		if err != nil || len(ownerMods) == 0 {
			return err
		}
		rels, err := tx.Store.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &thing})
		if err != nil {
			return err
		}
		var cur []string
		for _, r := range rels {
			cur = append(cur, r.From.ID)
		}
		owners := cur
		for _, i := range ownerMods {
			if owners, err = apply(mods[i], ownerIDs[i], owners, false, func(a, b string) bool { return a == b }); err != nil {
				return err
			}
		}
		// identity checks each edge as it does for SCIM (an owner is a user).
		for _, id := range cur {
			if !slices.Contains(owners, id) {
				if err := tx.RemoveRelationship(ctx, store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: id}, To: thing}); err != nil {
					return err
				}
			}
		}
		for _, id := range owners {
			if !slices.Contains(cur, id) {
				err := tx.AddRelationship(ctx, store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: id}, To: thing})
				if errors.Is(err, store.ErrNotFound) {
					return refuse(resultConstraintViolation, "owner: a person named was deleted meanwhile; nothing changed")
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (ss *session) modifyGroup(ctx context.Context, n node, mods []modification, vals [][]string) error {
	g, err := ss.s.groupByName(ctx, n.name)
	if err != nil {
		return err
	}
	refs := make([][]string, len(mods))
	for i, m := range mods {
		switch m.attr.name {
		case "member":
		case "cn":
			return refuse(resultNotAllowedOnRDN, "cn: names the group; rename it with Modify DN (ldapmodrdn)")
		case "objectClass":
			return refuse(resultObjectClassViolation, "objectClass: the class of an entry does not change")
		default:
			return notKept(m.attr.name, "a group", groupWritable)
		}
		rs, err := ss.s.members(ctx, vals[i])
		if err != nil {
			return err
		}
		for _, r := range rs {
			refs[i] = append(refs[i], refKey(r))
		}
	}
	_, err = ss.s.opts.Writer.UpdateGroup(ctx, ss.who.actor(), g.ID, 0, func(g *store.Group) error {
		cur := make([]string, 0, len(g.Members))
		for _, r := range g.Members {
			cur = append(cur, refKey(r))
		}
		for i, m := range mods {
			var err error
			if cur, err = apply(m, refs[i], cur, false, func(a, b string) bool { return a == b }); err != nil {
				return err
			}
		}
		g.Members = g.Members[:0]
		for _, k := range cur {
			kind, id, _ := strings.Cut(k, ":")
			g.Members = append(g.Members, store.Ref{Kind: store.Kind(kind), ID: id})
		}
		return nil
	})
	return err
}

func refKey(r store.Ref) string { return string(r.Kind) + ":" + r.ID }

// members resolves DNs of member values to the identities they name.
func (s *Server) members(ctx context.Context, dns []string) ([]store.Ref, error) {
	refs := make([]store.Ref, 0, len(dns))
	for _, v := range dns {
		r, err := s.resolve(ctx, "member", v)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// owners resolves DNs of owner values to the ids of the people they name:
// only a person owns a device.
func (s *Server) owners(ctx context.Context, dns []string) ([]string, error) {
	ids := make([]string, 0, len(dns))
	for _, v := range dns {
		r, err := s.resolve(ctx, "owner", v)
		if err != nil {
			return nil, err
		}
		if r.Kind != store.KindUser {
			return nil, refuse(resultConstraintViolation, "owner: %s is not a person; only people own devices", v)
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// resolve is the identity a DN-valued attribute's value names.
func (s *Server) resolve(ctx context.Context, attr, v string) (store.Ref, error) {
	dn, err := ParseDN(v)
	if err != nil {
		return store.Ref{}, refuse(resultInvalidAttributeSyntax, "%s: %v", attr, err)
	}
	n, err := s.locate(dn)
	var r store.Ref
	switch {
	case err != nil || n.kind == "base" || n.kind == "ou" || n.kind == "service":
		return store.Ref{}, refuse(resultConstraintViolation, "%s: %s is not a person, device or group of this directory", attr, v)
	case n.kind == "user":
		var u *store.User
		if u, err = s.opts.Store.GetUserByName(ctx, n.name); err == nil {
			r = store.Ref{Kind: store.KindUser, ID: u.ID}
		}
	case n.kind == "thing":
		var t *store.Thing
		if t, err = s.opts.Store.GetThing(ctx, n.name); err == nil {
			r = store.Ref{Kind: store.KindThing, ID: t.ID}
		}
	default:
		var g *store.Group
		if g, err = s.groupByName(ctx, n.name); err == nil {
			r = store.Ref{Kind: store.KindGroup, ID: g.ID}
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return store.Ref{}, refuse(resultConstraintViolation, "%s: %s does not exist", attr, v)
	}
	return r, err
}

// modifyDN serves a ModifyDNRequest: an administrator renames a person or
// a group within its ou.
func (ss *session) modifyDN(ctx context.Context, r *modDNRequest) *ber.Packet {
	newDN, err := ss.renameEntry(ctx, r)
	if newDN == "" {
		newDN = r.dn
	}
	return resultOp(opModDNResponse, ss.writeResult(newDN, err))
}

func (ss *session) renameEntry(ctx context.Context, r *modDNRequest) (string, error) {
	n, dn, err := ss.target(r.dn)
	if err != nil {
		return "", err
	}
	if err := ss.requireAdmin("rename entries"); err != nil {
		return "", err
	}
	if n.kind == "thing" {
		return "", refuse(resultUnwillingToPerform, "entry: a device's cn is its id, which does not change")
	}
	parent := dn[1:]
	if r.hasNewSuperior {
		sup, err := ParseDN(r.newSuperior)
		if err != nil {
			return "", refuse(resultInvalidDNSyntax, "newSuperior: %v", err)
		}
		if !sup.Equal(parent) {
			return "", refuse(resultUnwillingToPerform, "newSuperior: an entry stays in its own ou (%s)", parent)
		}
	}
	rdn, err := ParseDN(r.newRDN)
	naming := dn[0][0].Type
	switch {
	case err != nil:
		return "", refuse(resultInvalidDNSyntax, "newrdn: %v", err)
	case len(rdn) != 1 || len(rdn[0]) != 1 || rdn[0][0].Type != naming:
		return "", refuse(resultNamingViolation, "newrdn: an entry of %s is named by %s alone", parent, naming)
	case !r.deleteOldRDN:
		// RFC 4511 §4.9: without deleteoldrdn the old name would stay a
		// value of the attribute, and a person has one uid, a group one cn.
		return "", refuse(resultUnwillingToPerform, "deleteoldrdn: the old %s cannot be kept; rename with deleteoldrdn (ldapmodrdn -r)", naming)
	}
	name := rdn[0][0].Value
	newDN := DN(append(DN{rdn[0]}, parent...)).String()
	actor := ss.who.actor()
	if n.kind == "user" {
		u, err := ss.s.opts.Store.GetUserByName(ctx, n.name)
		if err != nil {
			return r.dn, err
		}
		_, err = ss.s.opts.Writer.UpdateUser(ctx, actor, u.ID, 0, func(u *store.User) error {
			u.UserName = name
			return nil
		})
		return newDN, err
	}
	g, err := ss.s.groupByName(ctx, n.name)
	if err != nil {
		return r.dn, err
	}
	_, err = ss.s.opts.Writer.UpdateGroup(ctx, actor, g.ID, 0, func(g *store.Group) error {
		g.DisplayName = name
		return nil
	})
	return newDN, err
}
