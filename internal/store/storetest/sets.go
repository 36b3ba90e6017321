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
	tests := []struct {
		name string
		kind store.RelKind
		end  store.RelEnd
		ends []store.Ref
		n    int
	}{
		{"groups of users", store.RelMember, store.EndFrom, padded(users), 5},
		{"members of groups", store.RelMember, store.EndTo, groups, 6},
		{"owners of things", store.RelOwner, store.EndTo, padded(things), 3},
		{"groups of things and users", store.RelMember, store.EndFrom, append(slices.Clone(things), users[1]), 3},
		{"owners of one thing", store.RelOwner, store.EndTo, things[1:2], 1},
		{"none", store.RelOwner, store.EndTo, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.RelationshipsOf(ctx(t), tt.kind, tt.end, tt.ends)
			must(t, err)
			want := oneAtATime(tt.kind, tt.end, tt.ends)
			if len(got) != tt.n || !slices.EqualFunc(got, want, func(a, b store.Relationship) bool {
				return a.Kind == b.Kind && a.From == b.From && a.To == b.To && a.Created.Equal(b.Created)
			}) {
				t.Fatalf("got %d %+v\nwant %d %+v", len(got), got, tt.n, want)
			}
		})
	}
	_, err := s.RelationshipsOf(ctx(t), store.RelOwner, "sideways", things)
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
