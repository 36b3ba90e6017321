package directory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// The tree below the base DN:
//
//	<base>                          domain (or organization, organizationalUnit)
//	  ou=people                     organizationalUnit
//	    uid=<userName>              inetOrgPerson
//	  ou=devices                    organizationalUnit
//	    cn=<thing id>               device + thingidDevice
//	  ou=groups                     organizationalUnit
//	    cn=<group displayName>      groupOfNames
//	  ou=services                   organizationalUnit
//	    cn=<client_id>              applicationProcess
//
// A thing is named by its id: neither its display name nor its serial
// number is unique. Every stored entry's entryUUID is the SCIM id. The
// service accounts are not stored: they are the OAuth clients
// ldap.serviceAccounts lists.
const (
	ouPeople   = "people"
	ouDevices  = "devices"
	ouGroups   = "groups"
	ouServices = "services"
)

// containers are the ous below the base, in the order searches return them.
var containers = []string{ouPeople, ouDevices, ouGroups, ouServices}

// Store is what the directory reads of the store (store.Store).
type Store interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByName(ctx context.Context, userName string) (*store.User, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	ListUsers(ctx context.Context, q store.Query) ([]*store.User, int, error)
	ListThingsWith(ctx context.Context, q store.Query, specs []store.RelSpec) ([]*store.Thing, []store.Related, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)
	// What a page of entries refers to, read for the whole page at once.
	Related(ctx context.Context, self store.Kind, ids []string, specs []store.RelSpec) ([]store.Related, error)
	UserNames(ctx context.Context, ids []string) (map[string]string, error)
	GroupNames(ctx context.Context, ids []string) (map[string]string, error)
}

// node is what a DN names in the tree.
type node struct {
	kind string // "base", "ou", "user", "thing", "group", "service"
	ou   string // for kind ou
	name string // userName, thing id, group name or client id
}

// locate says what dn names, or errNoSuchObject when nothing can be there.
func (s *Server) locate(dn DN) (node, error) {
	rel, ok := dn.Under(s.base)
	if !ok {
		return node{}, errNoSuchObject
	}
	switch len(rel) {
	case 0:
		return node{kind: "base"}, nil
	case 1, 2:
	default:
		return node{}, errNoSuchObject
	}
	top := rel[len(rel)-1]
	if len(top) != 1 || top[0].Type != "ou" {
		return node{}, errNoSuchObject
	}
	ou := strings.ToLower(top[0].Value)
	if !slices.Contains(containers, ou) {
		return node{}, errNoSuchObject
	}
	if len(rel) == 1 {
		return node{kind: "ou", ou: ou}, nil
	}
	leaf := rel[0]
	naming := map[string]string{ouPeople: "uid", ouDevices: "cn", ouGroups: "cn", ouServices: "cn"}[ou]
	if len(leaf) != 1 || leaf[0].Type != naming {
		return node{}, errNoSuchObject
	}
	kind := map[string]string{ouPeople: "user", ouDevices: "thing", ouGroups: "group", ouServices: "service"}[ou]
	return node{kind: kind, name: leaf[0].Value}, nil
}

// errNoSuchObject: nothing the caller may see is at that DN.
var errNoSuchObject = errors.New("no such object")

// under is the DN of an entry named attr=value in ou.
func (s *Server) under(ou, attr, value string) string {
	return DN(append(DN{{{Type: attr, Value: value}}, {{Type: "ou", Value: ou}}}, s.base...)).String()
}

func (s *Server) userDN(userName string) string { return s.under(ouPeople, "uid", userName) }
func (s *Server) thingDN(id string) string      { return s.under(ouDevices, "cn", id) }
func (s *Server) groupDN(name string) string    { return s.under(ouGroups, "cn", name) }

// refDN is the DN of the identity r named name (a user's userName, a
// group's displayName); "" when it has none.
func (s *Server) refDN(r store.Ref, name string) string {
	switch {
	case r.Kind == store.KindThing:
		return s.thingDN(r.ID)
	case name == "":
		return ""
	case r.Kind == store.KindUser:
		return s.userDN(name)
	case r.Kind == store.KindGroup:
		return s.groupDN(name)
	}
	return ""
}

// pageBound is the context of the reads that complete a page: what its
// entries refer to. Their work is bounded by the page (indexed lookups by
// the ids just read), not by the search's filter, so once started they
// run past the search's time limit, which is checked before: a context
// that can end costs the pure-Go SQLite driver and database/sql a
// goroutine each per statement, about as much CPU as an equality
// search's own lookup (docs/performance.md).
func pageBound(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// related reads what a page of identities of kind self refers to, in one
// statement: for each spec, the DNs at the other ends by the id of the
// identity of the page.
func (s *Server) related(ctx context.Context, self store.Kind, ids []string, specs ...store.RelSpec) ([]map[string][]string, error) {
	ctx, err := pageBound(ctx)
	if err != nil {
		return nil, err
	}
	rels, err := s.opts.Store.Related(ctx, self, ids, specs)
	if err != nil {
		return nil, err
	}
	return s.refDNs(rels, specs), nil
}

// refDNs are the DNs rels name, for each of specs by the id of the
// identity that refers to them.
func (s *Server) refDNs(rels []store.Related, specs []store.RelSpec) []map[string][]string {
	out := make([]map[string][]string, len(specs))
	for i := range out {
		out[i] = map[string][]string{}
	}
	for _, r := range rels {
		if dn := s.refDN(r.Other, r.Name); dn != "" {
			out[r.Spec][r.Self] = append(out[r.Spec][r.Self], dn)
		}
	}
	return out
}

// memberDNs are the DNs of a page of groups' members, by group id, with
// the names of the users and groups among them read once for the page;
// identities deleted meanwhile are left out.
func (s *Server) memberDNs(ctx context.Context, gs []*store.Group) (map[string][]string, error) {
	ids := map[store.Kind][]string{}
	seen := map[store.Ref]bool{}
	for _, g := range gs {
		for _, r := range g.Members {
			if !seen[r] {
				seen[r] = true
				ids[r.Kind] = append(ids[r.Kind], r.ID)
			}
		}
	}
	names := map[store.Kind]map[string]string{}
	ctx, err := pageBound(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids[store.KindUser]) > 0 {
		if names[store.KindUser], err = s.opts.Store.UserNames(ctx, ids[store.KindUser]); err != nil {
			return nil, err
		}
	}
	if len(ids[store.KindGroup]) > 0 {
		if names[store.KindGroup], err = s.opts.Store.GroupNames(ctx, ids[store.KindGroup]); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]string, len(gs))
	for _, g := range gs {
		for _, r := range g.Members {
			if dn := s.refDN(r, names[r.Kind][r.ID]); dn != "" {
				out[g.ID] = append(out[g.ID], dn)
			}
		}
	}
	return out, nil
}

// generalizedTime is t in GeneralizedTime (RFC 4517 §3.3.13), UTC.
func generalizedTime(t time.Time) string { return t.UTC().Format("20060102150405Z") }

// metaAttrs are the operational attributes every stored entry has.
func metaAttrs(m store.Meta) []attribute {
	return []attribute{
		{"entryUUID", []string{m.ID}},
		{"createTimestamp", []string{generalizedTime(m.Created)}},
		{"modifyTimestamp", []string{generalizedTime(m.Modified)}},
		{"subschemaSubentry", []string{subschemaDN}},
	}
}

// userEntry is u as an inetOrgPerson, member of groups.
func (s *Server) userEntry(u *store.User, groups []string) entry {
	cn := first(u.DisplayName, u.Name.Formatted, u.UserName)
	e := entry{dn: s.userDN(u.UserName), id: u.ID, attrs: []attribute{
		{"objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson"}},
		{"uid", []string{u.UserName}},
		{"cn", []string{cn}},
		{"sn", []string{first(u.Name.FamilyName, cn)}},
		{"givenName", nonEmpty(u.Name.GivenName)},
		{"displayName", nonEmpty(u.DisplayName)},
		{"mail", values(u.Emails)},
		{"telephoneNumber", values(u.PhoneNumbers)},
		{"preferredLanguage", nonEmpty(u.Locale)},
		{"memberOf", groups},
	}}
	e.attrs = append(e.attrs, metaAttrs(u.Meta)...)
	return e
}

// thingEntry is t as a device with the thingidDevice class, owned by
// owners and member of groups.
func (s *Server) thingEntry(t *store.Thing, owners, groups []string) entry {
	e := entry{dn: s.thingDN(t.ID), id: t.ID, attrs: []attribute{
		{"objectClass", []string{"top", "device", "thingidDevice"}},
		{"cn", []string{t.ID}},
		{"displayName", nonEmpty(t.DisplayName)},
		{"serialNumber", nonEmpty(t.SerialNumber)},
		{"owner", owners},
		{"l", nonEmpty(t.Location)},
		{"description", nonEmpty(thingDescription(t))},
		{"thingidMACAddress", t.MACAddresses},
		{"thingidModel", nonEmpty(t.Model)},
		{"thingidManufacturer", nonEmpty(t.Manufacturer)},
		{"thingidFirmwareVersion", nonEmpty(t.FirmwareVersion)},
		{"thingidStatus", nonEmpty(string(t.Status))},
		{"thingidThingType", nonEmpty(string(t.Type))},
		{"memberOf", groups},
	}}
	e.attrs = append(e.attrs, metaAttrs(t.Meta)...)
	return e
}

// groupEntry is g as a groupOfNames with members.
func (s *Server) groupEntry(g *store.Group, members []string) entry {
	e := entry{dn: s.groupDN(g.DisplayName), id: g.ID, attrs: []attribute{
		{"objectClass", []string{"top", "groupOfNames"}},
		{"cn", []string{g.DisplayName}},
		{"member", members},
	}}
	e.attrs = append(e.attrs, metaAttrs(g.Meta)...)
	return e
}

// baseEntry is the naming context's own entry; its class follows the type
// of its first RDN.
func (s *Server) baseEntry() entry {
	top := s.base[0][0]
	class := map[string]string{"dc": "domain", "o": "organization", "ou": "organizationalUnit"}[top.Type]
	if class == "" {
		class = "extensibleObject"
	}
	return entry{dn: s.base.String(), attrs: []attribute{
		{"objectClass", []string{"top", class}},
		{top.Type, []string{top.Value}},
		{"subschemaSubentry", []string{subschemaDN}},
	}}
}

// serviceEntry is the service account of an OAuth client: its ou
// attribute lists the containers it reads.
func (s *Server) serviceEntry(clientID string) entry {
	return entry{dn: s.under(ouServices, "cn", clientID), attrs: []attribute{
		{"objectClass", []string{"top", "applicationProcess"}},
		{"cn", []string{clientID}},
		{"ou", slices.Sorted(slices.Values(s.opts.ServiceAccounts[clientID]))},
		{"subschemaSubentry", []string{subschemaDN}},
	}}
}

// ouEntry is one of the containers.
func (s *Server) ouEntry(ou string) entry {
	return entry{dn: DN(append(DN{{{Type: "ou", Value: ou}}}, s.base...)).String(), attrs: []attribute{
		{"objectClass", []string{"top", "organizationalUnit"}},
		{"ou", []string{ou}},
		{"subschemaSubentry", []string{subschemaDN}},
	}}
}

// groupByName finds a group by its display name (unique, case-insensitively).
func (s *Server) groupByName(ctx context.Context, name string) (*store.Group, error) {
	gs, _, err := s.opts.Store.ListGroups(ctx, store.Query{Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: name}, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(gs) == 0 {
		return nil, store.ErrNotFound
	}
	return gs[0], nil
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func nonEmpty(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

func values(mv []store.MultiValue) []string {
	out := make([]string, 0, len(mv))
	for _, v := range mv {
		out = append(out, v.Value)
	}
	return out
}

// What a person's and a device's entries refer to.
var (
	groupsOf = store.RelSpec{Kind: store.RelMember, End: store.EndFrom}
	ownersOf = store.RelSpec{Kind: store.RelOwner, End: store.EndTo}
)

// userList, thingList and groupList run a query and build the entries of
// the page, with what they refer to read for the whole page when sel
// wants it (memberOf is operational: most searches do not).
func (s *Server) userList(ctx context.Context, q store.Query, sel *selection) ([]entry, error) {
	us, _, err := s.opts.Store.ListUsers(ctx, q)
	if err != nil || len(us) == 0 {
		return nil, err
	}
	groups := map[string][]string{}
	if sel.wants("memberOf") {
		refs, err := s.related(ctx, store.KindUser, idsOf(us, func(u *store.User) string { return u.ID }), groupsOf)
		if err != nil {
			return nil, err
		}
		groups = refs[0]
	}
	out := make([]entry, len(us))
	for i, u := range us {
		out[i] = s.userEntry(u, groups[u.ID])
	}
	return out, nil
}

// thingList reads a page of things and what it refers to in one statement
// (a search of devices asks for their owners, which are not operational).
func (s *Server) thingList(ctx context.Context, q store.Query, sel *selection) ([]entry, error) {
	var specs []store.RelSpec
	for _, want := range []struct {
		attr string
		spec store.RelSpec
	}{{"owner", ownersOf}, {"memberOf", groupsOf}} {
		if sel.wants(want.attr) {
			specs = append(specs, want.spec)
		}
	}
	ts, rels, err := s.opts.Store.ListThingsWith(ctx, q, specs)
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	refs := map[store.RelSpec]map[string][]string{}
	for i, found := range s.refDNs(rels, specs) {
		refs[specs[i]] = found
	}
	out := make([]entry, len(ts))
	for i, t := range ts {
		out[i] = s.thingEntry(t, refs[ownersOf][t.ID], refs[groupsOf][t.ID])
	}
	return out, nil
}

func (s *Server) groupList(ctx context.Context, q store.Query, sel *selection) ([]entry, error) {
	gs, _, err := s.opts.Store.ListGroups(ctx, q)
	if err != nil {
		return nil, err
	}
	var members map[string][]string
	if len(gs) > 0 && sel.wants("member") {
		if members, err = s.memberDNs(ctx, gs); err != nil {
			return nil, err
		}
	}
	out := make([]entry, len(gs))
	for i, g := range gs {
		out[i] = s.groupEntry(g, members[g.ID])
	}
	return out, nil
}

func idsOf[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}
