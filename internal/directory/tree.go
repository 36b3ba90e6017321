package directory

import (
	"context"
	"errors"
	"fmt"
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
//
// A thing is named by its id: neither its display name nor its serial
// number is unique. Every entry's entryUUID is the SCIM id.
const (
	ouPeople  = "people"
	ouDevices = "devices"
	ouGroups  = "groups"
)

// Store is what the directory reads of the store (store.Store).
type Store interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByName(ctx context.Context, userName string) (*store.User, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	GetGroup(ctx context.Context, id string) (*store.Group, error)
	ListUsers(ctx context.Context, q store.Query) ([]*store.User, int, error)
	ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)
	ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error)
}

// node is what a DN names in the tree.
type node struct {
	kind string // "base", "ou", "user", "thing", "group"
	ou   string // for kind ou
	name string // userName, thing id or group name
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
	if ou != ouPeople && ou != ouDevices && ou != ouGroups {
		return node{}, errNoSuchObject
	}
	if len(rel) == 1 {
		return node{kind: "ou", ou: ou}, nil
	}
	leaf := rel[0]
	naming := map[string]string{ouPeople: "uid", ouDevices: "cn", ouGroups: "cn"}[ou]
	if len(leaf) != 1 || leaf[0].Type != naming {
		return node{}, errNoSuchObject
	}
	kind := map[string]string{ouPeople: "user", ouDevices: "thing", ouGroups: "group"}[ou]
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

// refDN is the DN of the identity ref points at, "" when it is gone.
func (s *Server) refDN(ctx context.Context, ref store.Ref) (string, error) {
	switch ref.Kind {
	case store.KindUser:
		u, err := s.opts.Store.GetUser(ctx, ref.ID)
		if err != nil {
			return "", err
		}
		return s.userDN(u.UserName), nil
	case store.KindThing:
		return s.thingDN(ref.ID), nil
	case store.KindGroup:
		g, err := s.opts.Store.GetGroup(ctx, ref.ID)
		if err != nil {
			return "", err
		}
		return s.groupDN(g.DisplayName), nil
	}
	return "", fmt.Errorf("unknown kind %q", ref.Kind)
}

// related returns the DNs at the other end of the relationships f selects:
// the To side when from is true, else the From side.
func (s *Server) related(ctx context.Context, f store.RelFilter, other func(store.Relationship) store.Ref) ([]string, error) {
	rels, err := s.opts.Store.ListRelationships(ctx, f)
	if err != nil {
		return nil, err
	}
	var dns []string
	for _, r := range rels {
		dn, err := s.refDN(ctx, other(r))
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		dns = append(dns, dn)
	}
	return dns, nil
}

func from(r store.Relationship) store.Ref { return r.From }
func to(r store.Relationship) store.Ref   { return r.To }

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

// userEntry is u as an inetOrgPerson.
func (s *Server) userEntry(ctx context.Context, u *store.User) (entry, error) {
	groups, err := s.related(ctx, store.RelFilter{Kind: store.RelMember, From: &store.Ref{Kind: store.KindUser, ID: u.ID}}, to)
	if err != nil {
		return entry{}, err
	}
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
	return e, nil
}

// thingEntry is t as a device with the thingidDevice class.
func (s *Server) thingEntry(ctx context.Context, t *store.Thing) (entry, error) {
	ref := &store.Ref{Kind: store.KindThing, ID: t.ID}
	owners, err := s.related(ctx, store.RelFilter{Kind: store.RelOwner, To: ref}, from)
	if err != nil {
		return entry{}, err
	}
	groups, err := s.related(ctx, store.RelFilter{Kind: store.RelMember, From: ref}, to)
	if err != nil {
		return entry{}, err
	}
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
	return e, nil
}

// groupEntry is g as a groupOfNames.
func (s *Server) groupEntry(ctx context.Context, g *store.Group) (entry, error) {
	var members []string
	for _, m := range g.Members {
		dn, err := s.refDN(ctx, m)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return entry{}, err
		}
		members = append(members, dn)
	}
	e := entry{dn: s.groupDN(g.DisplayName), id: g.ID, attrs: []attribute{
		{"objectClass", []string{"top", "groupOfNames"}},
		{"cn", []string{g.DisplayName}},
		{"member", members},
	}}
	e.attrs = append(e.attrs, metaAttrs(g.Meta)...)
	return e, nil
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

// ouEntry is one of the three containers.
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

// userList, thingList and groupList run a query and build the entries.
func (s *Server) userList(ctx context.Context, q store.Query) ([]entry, error) {
	us, _, err := s.opts.Store.ListUsers(ctx, q)
	return build(ctx, us, err, s.userEntry)
}

func (s *Server) thingList(ctx context.Context, q store.Query) ([]entry, error) {
	ts, _, err := s.opts.Store.ListThings(ctx, q)
	return build(ctx, ts, err, s.thingEntry)
}

func (s *Server) groupList(ctx context.Context, q store.Query) ([]entry, error) {
	gs, _, err := s.opts.Store.ListGroups(ctx, q)
	return build(ctx, gs, err, s.groupEntry)
}

func build[T any](ctx context.Context, items []T, err error, mk func(context.Context, T) (entry, error)) ([]entry, error) {
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(items))
	for _, it := range items {
		e, err := mk(ctx, it)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
