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
	ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)
	// What a page of entries refers to, read for the whole page at once.
	RelationshipsOf(ctx context.Context, kind store.RelKind, end store.RelEnd, ends []store.Ref) ([]store.Relationship, error)
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

// refs is what one page of entries refers to, read for the whole page in
// a few queries: the relationships of its identities, and the names of
// the users and groups at their other ends.
type refs struct {
	s      *Server
	users  map[string]string // userName by id
	groups map[string]string // displayName by id
}

// links maps each of ids (of kind self) to the identities at the other end
// of its relationships of kind, where it is the end named end; in the
// store's order.
func (s *Server) links(ctx context.Context, kind store.RelKind, end store.RelEnd, self store.Kind, ids []string) (map[string][]store.Ref, error) {
	ends := make([]store.Ref, len(ids))
	for i, id := range ids {
		ends[i] = store.Ref{Kind: self, ID: id}
	}
	rels, err := s.opts.Store.RelationshipsOf(ctx, kind, end, ends)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]store.Ref, len(ids))
	for _, r := range rels {
		if end == store.EndFrom {
			out[r.From.ID] = append(out[r.From.ID], r.To)
		} else {
			out[r.To.ID] = append(out[r.To.ID], r.From)
		}
	}
	return out, nil
}

// names reads the names of the users and groups among the refs of lists,
// each once.
func (s *Server) names(ctx context.Context, lists ...map[string][]store.Ref) (*refs, error) {
	ids := map[store.Kind][]string{}
	seen := map[store.Ref]bool{}
	for _, l := range lists {
		for _, rs := range l {
			for _, r := range rs {
				if !seen[r] {
					seen[r] = true
					ids[r.Kind] = append(ids[r.Kind], r.ID)
				}
			}
		}
	}
	out := &refs{s: s, users: map[string]string{}, groups: map[string]string{}}
	var err error
	if len(ids[store.KindUser]) > 0 {
		if out.users, err = s.opts.Store.UserNames(ctx, ids[store.KindUser]); err != nil {
			return nil, err
		}
	}
	if len(ids[store.KindGroup]) > 0 {
		if out.groups, err = s.opts.Store.GroupNames(ctx, ids[store.KindGroup]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dns are the DNs of rs; identities deleted meanwhile are left out.
func (n *refs) dns(rs []store.Ref) []string {
	var out []string
	for _, r := range rs {
		switch r.Kind {
		case store.KindUser:
			if name, ok := n.users[r.ID]; ok {
				out = append(out, n.s.userDN(name))
			}
		case store.KindGroup:
			if name, ok := n.groups[r.ID]; ok {
				out = append(out, n.s.groupDN(name))
			}
		case store.KindThing:
			out = append(out, n.s.thingDN(r.ID))
		}
	}
	return out
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

// userList, thingList and groupList run a query and build the entries of
// the page, with what they refer to read for the whole page.
func (s *Server) userList(ctx context.Context, q store.Query) ([]entry, error) {
	us, _, err := s.opts.Store.ListUsers(ctx, q)
	if err != nil {
		return nil, err
	}
	groups, err := s.links(ctx, store.RelMember, store.EndFrom, store.KindUser, idsOf(us, func(u *store.User) string { return u.ID }))
	if err != nil {
		return nil, err
	}
	n, err := s.names(ctx, groups)
	if err != nil {
		return nil, err
	}
	out := make([]entry, len(us))
	for i, u := range us {
		out[i] = s.userEntry(u, n.dns(groups[u.ID]))
	}
	return out, nil
}

func (s *Server) thingList(ctx context.Context, q store.Query) ([]entry, error) {
	ts, _, err := s.opts.Store.ListThings(ctx, q)
	if err != nil {
		return nil, err
	}
	ids := idsOf(ts, func(t *store.Thing) string { return t.ID })
	owners, err := s.links(ctx, store.RelOwner, store.EndTo, store.KindThing, ids)
	if err != nil {
		return nil, err
	}
	groups, err := s.links(ctx, store.RelMember, store.EndFrom, store.KindThing, ids)
	if err != nil {
		return nil, err
	}
	n, err := s.names(ctx, owners, groups)
	if err != nil {
		return nil, err
	}
	out := make([]entry, len(ts))
	for i, t := range ts {
		out[i] = s.thingEntry(t, n.dns(owners[t.ID]), n.dns(groups[t.ID]))
	}
	return out, nil
}

func (s *Server) groupList(ctx context.Context, q store.Query) ([]entry, error) {
	gs, _, err := s.opts.Store.ListGroups(ctx, q)
	if err != nil {
		return nil, err
	}
	members := make(map[string][]store.Ref, len(gs))
	for _, g := range gs {
		members[g.ID] = g.Members
	}
	n, err := s.names(ctx, members)
	if err != nil {
		return nil, err
	}
	out := make([]entry, len(gs))
	for i, g := range gs {
		out[i] = s.groupEntry(g, n.dns(g.Members))
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
