package directory

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/store"
)

// countingStore counts the reads a search makes of what entries refer to
// (memberOf, owner, member), on the real store underneath: what the
// directory reads one entry at a time (GetUser) and what it reads for a
// whole page.
type countingStore struct {
	Store
	refReads atomic.Int64
	// pageSpecs counts what pages of devices read of what they refer to
	// in the page's own statement (ListThingsWith's specs).
	pageSpecs atomic.Int64
}

func (c *countingStore) count() { c.refReads.Add(1) }

func (c *countingStore) GetUser(ctx context.Context, id string) (*store.User, error) {
	c.count()
	return c.Store.GetUser(ctx, id)
}

func (c *countingStore) Related(ctx context.Context, self store.Kind, ids []string, specs []store.RelSpec) ([]store.Related, error) {
	c.count()
	return c.Store.Related(ctx, self, ids, specs)
}

func (c *countingStore) ListThingsWith(ctx context.Context, q store.Query, specs []store.RelSpec) ([]*store.Thing, []store.Related, error) {
	c.pageSpecs.Add(int64(len(specs)))
	return c.Store.ListThingsWith(ctx, q, specs)
}

func (c *countingStore) UserNames(ctx context.Context, ids []string) (map[string]string, error) {
	c.count()
	return c.Store.UserNames(ctx, ids)
}

func (c *countingStore) GroupNames(ctx context.Context, ids []string) (map[string]string, error) {
	c.count()
	return c.Store.GroupNames(ctx, ids)
}

// crowd adds n people in two groups each and n things with two owners
// each, and one group holding them all.
func (e *testEnv) crowd(t *testing.T, n int) {
	t.Helper()
	ctx := t.Context()
	all := &store.Group{DisplayName: "everyone"}
	var people []*store.User
	for i := range n {
		u, err := e.ids.CreateUser(ctx, "test", &store.User{UserName: fmt.Sprintf("crowd%02d", i)}, "")
		if err != nil {
			t.Fatal(err)
		}
		people = append(people, u)
		all.Members = append(all.Members, store.Ref{Kind: store.KindUser, ID: u.ID})
	}
	for i := range n {
		th, err := e.ids.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, SerialNumber: fmt.Sprintf("CRW-%02d", i)})
		if err != nil {
			t.Fatal(err)
		}
		for _, owner := range []*store.User{people[i], people[(i+1)%n]} {
			if err := e.ids.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner,
				From: store.Ref{Kind: store.KindUser, ID: owner.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
				t.Fatal(err)
			}
		}
		all.Members = append(all.Members, store.Ref{Kind: store.KindThing, ID: th.ID})
	}
	if _, err := e.ids.CreateGroup(ctx, "test", all); err != nil {
		t.Fatal(err)
	}
	half := &store.Group{DisplayName: "half", Members: all.Members[:n/2]}
	if _, err := e.ids.CreateGroup(ctx, "test", half); err != nil {
		t.Fatal(err)
	}
}

// oracle is what an entry refers to, read one entry at a time: for each
// stored entry, its memberOf, owner and member values in the order the
// store lists them.
func (e *testEnv) oracle(t *testing.T) map[string]map[string][]string {
	t.Helper()
	ctx := t.Context()
	dnOf := func(r store.Ref) string {
		switch r.Kind {
		case store.KindUser:
			u, err := e.st.GetUser(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			return "uid=" + u.UserName + ",ou=people," + base
		case store.KindGroup:
			g, err := e.st.GetGroup(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			return "cn=" + g.DisplayName + ",ou=groups," + base
		}
		return "cn=" + r.ID + ",ou=devices," + base
	}
	rels := func(f store.RelFilter, other func(store.Relationship) store.Ref) []string {
		rs, err := e.st.ListRelationships(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, dnOf(other(r)))
		}
		return out
	}
	out := map[string]map[string][]string{}
	us, _, err := e.st.ListUsers(ctx, store.Query{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		ref := store.Ref{Kind: store.KindUser, ID: u.ID}
		out[dnOf(ref)] = map[string][]string{"memberOf": rels(store.RelFilter{Kind: store.RelMember, From: &ref}, func(r store.Relationship) store.Ref { return r.To })}
	}
	ts, _, err := e.st.ListThings(ctx, store.Query{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range ts {
		ref := store.Ref{Kind: store.KindThing, ID: th.ID}
		out[dnOf(ref)] = map[string][]string{
			"memberOf": rels(store.RelFilter{Kind: store.RelMember, From: &ref}, func(r store.Relationship) store.Ref { return r.To }),
			"owner":    rels(store.RelFilter{Kind: store.RelOwner, To: &ref}, func(r store.Relationship) store.Ref { return r.From }),
		}
	}
	gs, _, err := e.st.ListGroups(ctx, store.Query{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		var members []string
		for _, m := range g.Members {
			members = append(members, dnOf(m))
		}
		out[dnOf(store.Ref{Kind: store.KindGroup, ID: g.ID})] = map[string][]string{"member": members}
	}
	return out
}

// A page of entries reads what its entries refer to in a few queries for
// the whole page, not a few per entry, and the values are those the
// entries' own relationships give, in the same order.
func TestReferencesReadPerPage(t *testing.T) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) { testReferencesReadPerPage(t, b.open) })
	}
}

func testReferencesReadPerPage(t *testing.T, open opener) {
	counting := &countingStore{}
	e := newEnvOn(t, open, func(o *Options, _ *netlimit.Policy, _ *authn.SessionOptions) {
		counting.Store = o.Store
		o.Store = counting
	})
	e.crowd(t, 12)
	want := e.oracle(t)
	c := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	const size = 10
	paging := ldap.NewControlPaging(size)
	got := map[string]map[string][]string{}
	for pages := 0; ; pages++ {
		counting.refReads.Store(0)
		res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(|(objectClass=inetOrgPerson)(objectClass=device)(objectClass=groupOfNames))", []string{"memberOf", "owner", "member"}, []ldap.Control{paging}))
		if err != nil || pages > 10 {
			t.Fatalf("page %d: %v", pages, err)
		}
		// A page spans at most two kinds: people and devices read their
		// relationships with the names at their other ends in one
		// statement, groups the names of their members' two kinds.
		if n := counting.refReads.Load(); n > 3 {
			t.Errorf("page %d of %d entries: %d reads of what they refer to, want at most 3", pages, len(res.Entries), n)
		}
		for _, en := range res.Entries {
			got[en.DN] = map[string][]string{}
			for _, a := range en.Attributes {
				got[en.DN][a.Name] = a.Values
			}
		}
		ctl, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if ctl == nil || len(ctl.Cookie) == 0 {
			break
		}
		paging.SetCookie(ctl.Cookie)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for dn, attrs := range want {
		for name, vs := range attrs {
			if !slices.Equal(got[dn][name], vs) {
				t.Errorf("%s %s: got %q, want %q", dn, name, got[dn][name], vs)
			}
		}
	}
}

// What an entry refers to is read only when the search asks for the
// attribute: memberOf is operational, so a search for the user attributes
// of people reads none, one of devices only their owners (in the page's
// own statement).
func TestReferencesReadWhenWanted(t *testing.T) {
	counting := &countingStore{}
	e := newEnv(t, func(o *Options, _ *netlimit.Policy, _ *authn.SessionOptions) {
		counting.Store = o.Store
		o.Store = counting
	})
	e.crowd(t, 4)
	want := e.oracle(t)
	c := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	for _, tc := range []struct {
		ou, class string
		attrs     []string
		reads     int64    // statements of their own
		pageSpecs int64    // kinds of references read with a page of devices
		refs      []string // the attributes of references sent, with the oracle's values
	}{
		{"people", "inetOrgPerson", nil, 0, 0, nil},
		{"people", "inetOrgPerson", []string{"cn", "mail"}, 0, 0, nil},
		{"people", "inetOrgPerson", []string{"*", "+"}, 1, 0, []string{"memberOf"}},
		{"devices", "device", nil, 0, 1, []string{"owner"}},
		{"devices", "device", []string{"cn", "serialNumber"}, 0, 0, nil},
		{"devices", "device", []string{"owner", "memberOf"}, 0, 2, []string{"owner", "memberOf"}},
		{"groups", "groupOfNames", []string{"cn"}, 0, 0, nil},
		{"groups", "groupOfNames", nil, 1, 0, []string{"member"}},
	} {
		counting.refReads.Store(0)
		counting.pageSpecs.Store(0)
		res, err := c.Search(ldap.NewSearchRequest("ou="+tc.ou+","+base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass="+tc.class+")", tc.attrs, nil))
		if err != nil || len(res.Entries) == 0 {
			t.Fatalf("%s %q: %v, %d entries", tc.ou, tc.attrs, err, len(res.Entries))
		}
		if n := counting.refReads.Load(); n != tc.reads {
			t.Errorf("%s %q: %d reads of what entries refer to, want %d", tc.ou, tc.attrs, n, tc.reads)
		}
		if n := counting.pageSpecs.Load(); n != tc.pageSpecs {
			t.Errorf("%s %q: %d kinds of references read with the page, want %d", tc.ou, tc.attrs, n, tc.pageSpecs)
		}
		for _, en := range res.Entries {
			for _, name := range []string{"memberOf", "owner", "member"} {
				got := en.GetAttributeValues(name)
				if !slices.Contains(tc.refs, name) {
					if len(got) > 0 {
						t.Errorf("%s %q: %s sent %s", tc.ou, tc.attrs, en.DN, name)
					}
					continue
				}
				if !slices.Equal(got, want[en.DN][name]) {
					t.Errorf("%s %q: %s %s: got %q, want %q", tc.ou, tc.attrs, en.DN, name, got, want[en.DN][name])
				}
			}
		}
	}
}
