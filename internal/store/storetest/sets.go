package storetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// testSets: the reads of a whole set of identities at once (a page of
// directory entries and what they refer to) answer what the reads of one
// identity at a time answer, across more ids than one IN list binds.
func testSets(t *testing.T, s store.Store) {
	var users []store.Ref
	names := map[string]string{}
	for i := range 3 {
		u := &store.User{UserName: fmt.Sprintf("Set-User-%d", i)}
		must(t, s.CreateUser(ctx(t), u))
		users = append(users, store.Ref{Kind: store.KindUser, ID: u.ID})
		names[u.ID] = u.UserName
	}
	var groups []store.Ref
	groupNames := map[string]string{}
	for i := range 2 {
		g := &store.Group{DisplayName: fmt.Sprintf("Set Group %d", i), Members: users[i:]}
		must(t, s.CreateGroup(ctx(t), g))
		groups = append(groups, store.Ref{Kind: store.KindGroup, ID: g.ID})
		groupNames[g.ID] = g.DisplayName
	}
	var things []store.Ref
	for i := range 3 {
		th := newThing(fmt.Sprintf("SET-%d", i))
		must(t, s.CreateThing(ctx(t), th))
		things = append(things, store.Ref{Kind: store.KindThing, ID: th.ID})
		for _, u := range users[:i] {
			must(t, s.AddRelationship(ctx(t), store.Relationship{Kind: store.RelOwner, From: u, To: things[i]}))
		}
	}
	must(t, s.AddRelationship(ctx(t), store.Relationship{Kind: store.RelMember, From: things[2], To: groups[0]}))

	// Ids of nobody, more than one IN list holds, with the real ones at
	// both ends: a set crosses the chunks.
	padded := func(real []store.Ref) []store.Ref {
		out := slices.Clone(real[:1])
		for i := range 600 {
			out = append(out, store.Ref{Kind: real[0].Kind, ID: fmt.Sprintf("nobody-%d", i)})
		}
		return append(out, real[1:]...)
	}
	ids := func(refs []store.Ref) []string {
		var out []string
		for _, r := range refs {
			out = append(out, r.ID)
		}
		return out
	}
	// one at a time: what ListRelationships says of each end, in its order.
	oneAtATime := func(kind store.RelKind, end store.RelEnd, ends []store.Ref) []store.Relationship {
		all, err := s.ListRelationships(ctx(t), store.RelFilter{Kind: kind})
		must(t, err)
		return slices.DeleteFunc(all, func(r store.Relationship) bool {
			e := r.To
			if end == store.EndFrom {
				e = r.From
			}
			return !slices.Contains(ends, e)
		})
	}
	nameOf := func(r store.Ref) string {
		switch r.Kind {
		case store.KindUser:
			return names[r.ID]
		case store.KindGroup:
			return groupNames[r.ID]
		}
		return r.ID
	}
	// The relationships one at a time, as Related reports them for specs.
	want := func(self []store.Ref, specs []store.RelSpec) []store.Related {
		var out []store.Related
		for i, sp := range specs {
			for _, r := range oneAtATime(sp.Kind, sp.End, self) {
				rel := store.Related{Spec: i, Self: r.From.ID, Other: r.To}
				if sp.End == store.EndTo {
					rel.Self, rel.Other = r.To.ID, r.From
				}
				rel.Name = nameOf(rel.Other)
				out = append(out, rel)
			}
		}
		return out
	}
	owners := store.RelSpec{Kind: store.RelOwner, End: store.EndTo}
	groupsOf := store.RelSpec{Kind: store.RelMember, End: store.EndFrom}
	membersOf := store.RelSpec{Kind: store.RelMember, End: store.EndTo}
	tests := []struct {
		name  string
		self  []store.Ref
		specs []store.RelSpec
		n     int
	}{
		{"groups of users", padded(users), []store.RelSpec{groupsOf}, 5},
		{"members of groups", groups, []store.RelSpec{membersOf}, 6},
		{"owners and groups of things", padded(things), []store.RelSpec{owners, groupsOf}, 4},
		{"groups and owners of things", things, []store.RelSpec{groupsOf, owners}, 4},
		{"owners of one thing", things[1:2], []store.RelSpec{owners}, 1},
		{"no specs", things, nil, 0},
		{"none", nil, []store.RelSpec{owners}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := store.KindThing
			if len(tt.self) > 0 {
				kind = tt.self[0].Kind
			}
			got, err := s.Related(ctx(t), kind, ids(tt.self), tt.specs)
			must(t, err)
			if w := want(tt.self, tt.specs); len(got) != tt.n || !slices.Equal(got, w) {
				t.Fatalf("got %d %+v\nwant %d %+v", len(got), got, tt.n, w)
			}
		})
	}
	_, err := s.Related(ctx(t), store.KindThing, ids(things), []store.RelSpec{{Kind: store.RelOwner, End: "sideways"}})
	wantErr(t, err, store.ErrInvalidQuery)

	// A page with what it refers to in one read: the page of ListThings,
	// and thing by thing what Related says of it.
	for _, tt := range []struct {
		name  string
		q     store.Query
		specs []store.RelSpec
	}{
		{"owners and groups", store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpSw, Value: "SET-"}, SortBy: "serialNumber", Limit: 10}, []store.RelSpec{owners, groupsOf}},
		{"groups and owners, second page", store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpSw, Value: "SET-"}, SortBy: "serialNumber", Descending: true, Offset: 1, Limit: 2}, []store.RelSpec{groupsOf, owners}},
		{"owners of one", store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "SET-2"}, Limit: 10}, []store.RelSpec{owners}},
		{"no specs", store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpSw, Value: "SET-"}, Limit: 10}, nil},
		{"no things", store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "SET-none"}, Limit: 10}, []store.RelSpec{owners}},
	} {
		t.Run("with "+tt.name, func(t *testing.T) {
			page, _, err := s.ListThings(ctx(t), tt.q)
			must(t, err)
			var w []store.Related
			for _, th := range page {
				for i, sp := range tt.specs {
					for _, r := range want([]store.Ref{{Kind: store.KindThing, ID: th.ID}}, []store.RelSpec{sp}) {
						r.Spec = i
						w = append(w, r)
					}
				}
			}
			got, rel, err := s.ListThingsWith(ctx(t), tt.q, tt.specs)
			must(t, err)
			if !slices.EqualFunc(got, page, func(a, b *store.Thing) bool { return a.ID == b.ID && a.SerialNumber == b.SerialNumber }) || !slices.Equal(rel, w) {
				t.Fatalf("got %d things %+v\nwant %d, %+v", len(got), rel, len(page), w)
			}
		})
	}
	_, _, err = s.ListThingsWith(ctx(t), store.Query{Limit: 1}, []store.RelSpec{{Kind: store.RelOwner, End: "sideways"}})
	wantErr(t, err, store.ErrInvalidQuery)

	gotUsers, err := s.UserNames(ctx(t), ids(padded(users)))
	must(t, err)
	if !maps.Equal(gotUsers, names) {
		t.Fatalf("user names: got %v, want %v", gotUsers, names)
	}
	gotGroups, err := s.GroupNames(ctx(t), append(ids(groups), users[0].ID))
	must(t, err)
	if !maps.Equal(gotGroups, groupNames) {
		t.Fatalf("group names: got %v, want %v", gotGroups, groupNames)
	}
	// Without the total, the same page.
	q := store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpSw, Value: "SET-"}, SortBy: "serialNumber", Offset: 1, Limit: 5}
	counted, total, err := s.ListThings(ctx(t), q)
	must(t, err)
	q.NoTotal = true
	uncounted, none1, err := s.ListThings(ctx(t), q)
	must(t, err)
	if total != 3 || none1 != -1 || len(uncounted) != 2 || !slices.EqualFunc(counted, uncounted, func(a, b *store.Thing) bool { return a.ID == b.ID }) {
		t.Fatalf("NoTotal: %d things and total %d, want the %d counted ones and -1", len(uncounted), none1, len(counted))
	}

	none, err := s.UserNames(ctx(t), nil)
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("names of no ids: %v", none)
	}
}
