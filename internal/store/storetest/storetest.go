// Package storetest is the contract of store.Store: Run exercises a backend and
// every backend's test calls it. It owns no backend and touches no database
// except through the store.Store it is given.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Run runs the conformance suite; open returns a fresh, empty store for each
// subtest (and closes it when the test ends).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"UserNameUnique", testUserNameUnique},
		{"VerifiedEmailUnique", testVerifiedEmailUnique},
		{"Things", testThings},
		{"ThingUniqueness", testThingUniqueness},
		{"CreateThings", testCreateThings},
		{"Groups", testGroups},
		{"Relationships", testRelationships},
		{"Sets", testSets},
		{"TimeLimit", testTimeLimit},
		{"EmailFilters", testEmailFilters},
		{"Audit", testAudit},
		{"AuditQueries", testAuditQueries},
		{"APITokens", testAPITokens},
		{"Filters", testFilters},
		{"SortAndPaging", testSortAndPaging},
		{"InvalidQueries", testInvalidQueries},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentCreates", testConcurrentCreates},
		{"WithTx", testWithTx},
		{"Stale", testStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func testUsers(t *testing.T, s store.Store) {
	u := &store.User{
		UserName: "Alice", DisplayName: "Alice Liddell", ExternalID: "ext-1", Status: store.StatusActive,
		Name:          store.Name{GivenName: "Alice", FamilyName: "Liddell", Formatted: "Alice Liddell"},
		Emails:        []store.MultiValue{{Value: "alice@example.com", Type: "work", Primary: true}},
		PhoneNumbers:  []store.MultiValue{{Value: "+44 1865 000000", Type: "home"}},
		Locale:        "en-GB",
		Timezone:      "Europe/London",
		EmailVerified: true,
		PasswordHash:  "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		// A one-time password: the flag must survive the round trip.
		MustChangePassword: true,
	}
	before := time.Now().Add(-time.Second)
	must(t, s.CreateUser(ctx(t), u))
	if u.ID == "" || u.Revision != 1 || u.Created.Before(before) || !u.Created.Equal(u.Modified) || u.Created.Location() != time.UTC {
		t.Fatalf("meta not set on create: %+v", u.Meta)
	}
	got, err := s.GetUser(ctx(t), u.ID)
	must(t, err)
	if !equalJSON(got, u) {
		t.Fatalf("GetUser:\n got %+v\nwant %+v", got, u)
	}
	got, err = s.GetUserByName(ctx(t), "aLiCe")
	must(t, err)
	if got.ID != u.ID {
		t.Fatalf("GetUserByName: got %s", got.ID)
	}
	_, err = s.GetUserByName(ctx(t), "bob")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetUser(ctx(t), "missing")
	wantErr(t, err, store.ErrNotFound)

	up, err := s.UpdateUser(ctx(t), u.ID, 1, func(u *store.User) error {
		u.DisplayName = "Alice L."
		u.Emails = append(u.Emails, store.MultiValue{Value: "a@home.example", Type: "home"})
		u.MustChangePassword = false
		u.ID, u.Revision, u.Created = "hijack", 99, time.Time{} // must be ignored
		return nil
	})
	must(t, err)
	if up.ID != u.ID || up.Revision != 2 || !up.Created.Equal(u.Created) || up.Modified.Before(u.Modified) {
		t.Fatalf("update meta: %+v", up.Meta)
	}
	got, err = s.GetUser(ctx(t), u.ID)
	must(t, err)
	if got.DisplayName != "Alice L." || len(got.Emails) != 2 || got.Revision != 2 || got.MustChangePassword {
		t.Fatalf("after update: %+v", got)
	}
	fnErr := errors.New("refused")
	_, err = s.UpdateUser(ctx(t), u.ID, 0, func(*store.User) error { return fnErr })
	wantErr(t, err, fnErr)
	_, err = s.UpdateUser(ctx(t), "missing", 0, func(*store.User) error { return nil })
	wantErr(t, err, store.ErrNotFound)

	wantErr(t, s.DeleteUser(ctx(t), u.ID, 1), store.ErrStale)
	must(t, s.DeleteUser(ctx(t), u.ID, 2))
	wantErr(t, s.DeleteUser(ctx(t), u.ID, 0), store.ErrNotFound)
	_, err = s.GetUser(ctx(t), u.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testUserNameUnique(t *testing.T, s store.Store) {
	must(t, s.CreateUser(ctx(t), &store.User{UserName: "Bob"}))
	err := s.CreateUser(ctx(t), &store.User{UserName: "bOB"})
	wantErr(t, err, store.ErrConflict)
	// Unicode case folding, not only ASCII.
	must(t, s.CreateUser(ctx(t), &store.User{UserName: "Émile"}))
	wantErr(t, s.CreateUser(ctx(t), &store.User{UserName: "éMILE"}), store.ErrConflict)
	c := &store.User{UserName: "carol"}
	must(t, s.CreateUser(ctx(t), c))
	_, err = s.UpdateUser(ctx(t), c.ID, 0, func(u *store.User) error { u.UserName = "BOB"; return nil })
	wantErr(t, err, store.ErrConflict)
	// A given ID that exists conflicts too.
	wantErr(t, s.CreateUser(ctx(t), &store.User{Meta: store.Meta{ID: c.ID}, UserName: "dave"}), store.ErrConflict)
	// The failed create did not happen.
	_, err = s.GetUserByName(ctx(t), "dave")
	wantErr(t, err, store.ErrNotFound)
}

// testVerifiedEmailUnique: at most one user holds an address verified
// (case-insensitively), any number hold it unverified, and only the verified
// holder is found by it (issue 12: an unverified address identifies nobody).
func testVerifiedEmailUnique(t *testing.T, s store.Store) {
	addr := func(a string) []store.MultiValue { return []store.MultiValue{{Value: a, Primary: true}} }
	// Unverified: any number, and nobody is found by it.
	carol := &store.User{UserName: "carol", Emails: addr("alice@example.com")}
	must(t, s.CreateUser(ctx(t), carol))
	must(t, s.CreateUser(ctx(t), &store.User{UserName: "mallory", Emails: addr("Alice@Example.com")}))
	_, err := s.GetUserByVerifiedEmail(ctx(t), "alice@example.com")
	wantErr(t, err, store.ErrNotFound)

	alice := &store.User{UserName: "alice", Emails: addr("Alice@example.com"), EmailVerified: true}
	must(t, s.CreateUser(ctx(t), alice))
	for _, a := range []string{"alice@example.com", "ALICE@EXAMPLE.COM"} {
		if u, err := s.GetUserByVerifiedEmail(ctx(t), a); err != nil || u.ID != alice.ID {
			t.Fatalf("GetUserByVerifiedEmail(%q) = %v, %v; want alice", a, u, err)
		}
	}
	// A second verified holder, created or updated, in any case: refused.
	err = s.CreateUser(ctx(t), &store.User{UserName: "eve", Emails: addr("ALICE@example.com"), EmailVerified: true})
	wantErr(t, err, store.ErrEmailTaken)
	wantErr(t, err, store.ErrConflict)
	_, err = s.GetUserByName(ctx(t), "eve")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UpdateUser(ctx(t), carol.ID, 0, func(u *store.User) error { u.EmailVerified = true; return nil })
	wantErr(t, err, store.ErrEmailTaken)
	if u, _ := s.GetUser(ctx(t), carol.ID); u.EmailVerified || u.Revision != 1 {
		t.Fatalf("the refused update was stored: %+v", u)
	}
	// The primary address is the one verified: a verified secondary one is not.
	dave := &store.User{UserName: "dave", EmailVerified: true,
		Emails: []store.MultiValue{{Value: "alice@example.com"}, {Value: "dave@example.com", Primary: true}}}
	must(t, s.CreateUser(ctx(t), dave))
	if u, err := s.GetUserByVerifiedEmail(ctx(t), "dave@example.com"); err != nil || u.ID != dave.ID {
		t.Fatalf("dave by his verified address: %v %v", u, err)
	}
	// A user name conflict is still a plain conflict.
	err = s.CreateUser(ctx(t), &store.User{UserName: "Alice", Emails: addr("other@example.com"), EmailVerified: true})
	if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrEmailTaken) {
		t.Fatalf("user name conflict: %v", err)
	}
	// Once alice's address is no longer verified (changed or unverified), it is free.
	_, err = s.UpdateUser(ctx(t), alice.ID, 0, func(u *store.User) error { u.Emails = addr("alice@work.example"); return nil })
	must(t, err)
	_, err = s.UpdateUser(ctx(t), carol.ID, 0, func(u *store.User) error { u.EmailVerified = true; return nil })
	must(t, err)
	if u, err := s.GetUserByVerifiedEmail(ctx(t), "alice@example.com"); err != nil || u.ID != carol.ID {
		t.Fatalf("after alice moved: %v %v", u, err)
	}
	// Deleting the holder frees the address.
	must(t, s.DeleteUser(ctx(t), carol.ID, 0))
	_, err = s.GetUserByVerifiedEmail(ctx(t), "alice@example.com")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetUserByVerifiedEmail(ctx(t), "")
	wantErr(t, err, store.ErrNotFound)
}

func newThing(serial string, macs ...string) *store.Thing {
	return &store.Thing{
		DisplayName: "Speaker " + serial, Type: store.ThingDevice, Manufacturer: "Acme", Model: "S1",
		SerialNumber: serial, FirmwareVersion: "1.0.0", Location: "kitchen", MACAddresses: macs,
		Status: store.StatusActive,
	}
}

func testThings(t *testing.T, s store.Store) {
	th := newThing("SN-1", "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02")
	th.ExternalID = "factory-1"
	th.JWKS = json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"BB"}]}`)
	th.Certificates = []store.CertRef{{FingerprintSHA256: "ab12", Subject: "CN=SN-1", Issuer: "CN=Acme CA", NotAfter: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}}
	th.Attributes = map[string]any{"color": "red", "volume": 7.0, "muted": false}
	must(t, s.CreateThing(ctx(t), th))
	if th.ID == "" || th.Revision != 1 {
		t.Fatalf("meta: %+v", th.Meta)
	}
	got, err := s.GetThing(ctx(t), th.ID)
	must(t, err)
	if !equalJSON(got, th) {
		t.Fatalf("GetThing:\n got %+v\nwant %+v", got, th)
	}
	up, err := s.UpdateThing(ctx(t), th.ID, 0, func(th *store.Thing) error {
		th.FirmwareVersion = "1.1.0"
		th.MACAddresses = []string{"aa:bb:cc:dd:ee:02", "aa:bb:cc:dd:ee:03"}
		th.Attributes["color"] = "blue"
		return nil
	})
	must(t, err)
	if up.Revision != 2 || up.FirmwareVersion != "1.1.0" {
		t.Fatalf("update: %+v", up)
	}
	// The dropped MAC is free again, the new one is taken.
	must(t, s.CreateThing(ctx(t), newThing("SN-2", "aa:bb:cc:dd:ee:01")))
	wantErr(t, s.CreateThing(ctx(t), newThing("SN-3", "aa:bb:cc:dd:ee:03")), store.ErrConflict)
	list, n, err := s.ListThings(ctx(t), store.Query{Filter: store.Compare{Field: "macAddresses", Op: store.OpEq, Value: "aa:bb:cc:dd:ee:03"}, Limit: -1})
	must(t, err)
	if n != 1 || list[0].ID != th.ID || list[0].Attributes["color"] != "blue" {
		t.Fatalf("by MAC: %d %+v", n, list)
	}
	must(t, s.DeleteThing(ctx(t), th.ID, 0))
	_, err = s.GetThing(ctx(t), th.ID)
	wantErr(t, err, store.ErrNotFound)
	// Deleting the thing frees its MACs.
	must(t, s.CreateThing(ctx(t), newThing("SN-4", "aa:bb:cc:dd:ee:03")))
}

func testThingUniqueness(t *testing.T, s store.Store) {
	must(t, s.CreateThing(ctx(t), newThing("SN-1")))
	tests := []struct {
		name  string
		thing *store.Thing
		want  error
	}{
		{"same serial, manufacturer and model", newThing("SN-1"), store.ErrConflict},
		{"same serial, other model", func() *store.Thing { th := newThing("SN-1"); th.Model = "S2"; return th }(), nil},
		{"same serial, other manufacturer", func() *store.Thing { th := newThing("SN-1"); th.Manufacturer = "Other"; return th }(), nil},
		{"empty serial twice (1)", newThing(""), nil},
		{"empty serial twice (2)", newThing(""), nil},
		{"new MAC", newThing("SN-2", "00:00:00:00:00:01"), nil},
		{"taken MAC", newThing("SN-3", "00:00:00:00:00:01"), store.ErrConflict},
		{"taken MAC in other case", newThing("SN-4", "00:00:00:00:00:0A"), nil},
		{"taken MAC in other case (2)", newThing("SN-5", "00:00:00:00:00:0a"), store.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateThing(ctx(t), tt.thing)
			if tt.want == nil {
				must(t, err)
			} else {
				wantErr(t, err, tt.want)
			}
		})
	}
	// An update to a taken serial or MAC conflicts.
	th := newThing("SN-9")
	must(t, s.CreateThing(ctx(t), th))
	// The conflict names the field and the value taken, for a page to say.
	taken := func(err error, field, value string) {
		t.Helper()
		wantErr(t, err, store.ErrConflict)
		if ce, ok := errors.AsType[*store.ConflictError](err); !ok || ce.Field != field || !slices.Equal(ce.Args, []any{value}) {
			t.Errorf("%#v, want a ConflictError on %s %q", err, field, value)
		}
	}
	taken(s.CreateThing(ctx(t), newThing("SN-1")), "serialNumber", "SN-1")
	taken(s.CreateThing(ctx(t), newThing("SN-6", "00:00:00:00:00:01")), "macAddresses", "00:00:00:00:00:01")
	_, err := s.UpdateThing(ctx(t), th.ID, 0, func(th *store.Thing) error { th.SerialNumber = "SN-1"; return nil })
	taken(err, "serialNumber", "SN-1")
	_, err = s.UpdateThing(ctx(t), th.ID, 0, func(th *store.Thing) error { th.MACAddresses = []string{"00:00:00:00:00:01"}; return nil })
	taken(err, "macAddresses", "00:00:00:00:00:01")
	got, err := s.GetThing(ctx(t), th.ID)
	must(t, err)
	if got.Revision != 1 || got.SerialNumber != "SN-9" || len(got.MACAddresses) != 0 {
		t.Fatalf("failed updates left traces: %+v", got)
	}
}

func testCreateThings(t *testing.T, s store.Store) {
	must(t, s.CreateThing(ctx(t), newThing("EXISTING", "10:00:00:00:00:00")))
	var batch []*store.Thing
	for i := range 1200 { // more than one multi-row statement
		batch = append(batch, newThing(fmt.Sprintf("B-%04d", i), fmt.Sprintf("20:00:00:00:%02x:%02x", i/256, i%256)))
	}
	batch[10].SerialNumber = "EXISTING"                                          // serial taken before
	batch[20].MACAddresses = []string{"10:00:00:00:00:00"}                       // MAC taken before
	batch[30].SerialNumber = batch[29].SerialNumber                              // serial taken in the batch
	batch[40].MACAddresses = append(batch[40].MACAddresses, "20:00:00:00:00:29") // MAC of batch[41]... taken below
	batch[1100].MACAddresses = []string{"20:00:00:00:00:05"}                     // MAC of batch[5]
	errs, err := s.CreateThings(ctx(t), batch)
	must(t, err)
	failed := map[int]bool{10: true, 20: true, 30: true, 41: true, 1100: true}
	for i, e := range errs {
		if failed[i] {
			wantErr(t, e, store.ErrConflict)
			if batch[i].ID != "" {
				if _, err := s.GetThing(ctx(t), batch[i].ID); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("things[%d] failed but is stored", i)
				}
			}
			continue
		}
		if e != nil {
			t.Fatalf("things[%d]: %v", i, e)
		}
	}
	_, n, err := s.ListThings(ctx(t), store.Query{})
	must(t, err)
	if want := 1 + len(batch) - len(failed); n != want {
		t.Fatalf("stored %d things, want %d", n, want)
	}
	got, err := s.GetThing(ctx(t), batch[40].ID)
	must(t, err)
	if len(got.MACAddresses) != 2 {
		t.Fatalf("batch[40] MACs: %v", got.MACAddresses)
	}
}

func testGroups(t *testing.T, s store.Store) {
	u := &store.User{UserName: "u1"}
	must(t, s.CreateUser(ctx(t), u))
	th := newThing("G-1")
	must(t, s.CreateThing(ctx(t), th))
	inner := &store.Group{DisplayName: "Inner"}
	must(t, s.CreateGroup(ctx(t), inner))
	g := &store.Group{DisplayName: "Family", ExternalID: "fam", Members: []store.Ref{
		{Kind: store.KindUser, ID: u.ID}, {Kind: store.KindThing, ID: th.ID}, {Kind: store.KindGroup, ID: inner.ID},
	}}
	must(t, s.CreateGroup(ctx(t), g))
	got, err := s.GetGroup(ctx(t), g.ID)
	must(t, err)
	if got.DisplayName != "Family" || got.ExternalID != "fam" || !sameRefs(got.Members, g.Members) {
		t.Fatalf("GetGroup: %+v", got)
	}
	wantErr(t, s.CreateGroup(ctx(t), &store.Group{DisplayName: "FAMILY"}), store.ErrConflict)
	wantErr(t, s.CreateGroup(ctx(t), &store.Group{DisplayName: "Ghosts", Members: []store.Ref{{Kind: store.KindUser, ID: "nobody"}}}), store.ErrNotFound)
	_, n, err := s.ListGroups(ctx(t), store.Query{Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: "ghosts"}})
	must(t, err)
	if n != 0 {
		t.Fatal("failed group create left the group behind")
	}
	// Members are relationships.
	rels, err := s.ListRelationships(ctx(t), store.RelFilter{Kind: store.RelMember, To: &store.Ref{Kind: store.KindGroup, ID: g.ID}})
	must(t, err)
	if len(rels) != 3 {
		t.Fatalf("member relationships: %+v", rels)
	}
	up, err := s.UpdateGroup(ctx(t), g.ID, 1, func(g *store.Group) error {
		g.DisplayName = "Family Smith"
		g.Members = []store.Ref{{Kind: store.KindUser, ID: u.ID}}
		return nil
	})
	must(t, err)
	if up.Revision != 2 || len(up.Members) != 1 {
		t.Fatalf("UpdateGroup: %+v", up)
	}
	got, err = s.GetGroup(ctx(t), g.ID)
	must(t, err)
	if !sameRefs(got.Members, []store.Ref{{Kind: store.KindUser, ID: u.ID}}) || got.DisplayName != "Family Smith" {
		t.Fatalf("after update: %+v", got)
	}
	// Relationships added directly show up as members.
	must(t, s.AddRelationship(ctx(t), store.Relationship{Kind: store.RelMember, From: store.Ref{Kind: store.KindThing, ID: th.ID}, To: store.Ref{Kind: store.KindGroup, ID: g.ID}}))
	got, err = s.GetGroup(ctx(t), g.ID)
	must(t, err)
	if len(got.Members) != 2 {
		t.Fatalf("members: %+v", got.Members)
	}
	// Deleting a member removes it from the group.
	must(t, s.DeleteUser(ctx(t), u.ID, 0))
	got, err = s.GetGroup(ctx(t), g.ID)
	must(t, err)
	if !sameRefs(got.Members, []store.Ref{{Kind: store.KindThing, ID: th.ID}}) {
		t.Fatalf("after member delete: %+v", got.Members)
	}
	must(t, s.DeleteGroup(ctx(t), g.ID, 0))
	rels, err = s.ListRelationships(ctx(t), store.RelFilter{From: &store.Ref{Kind: store.KindThing, ID: th.ID}})
	must(t, err)
	if len(rels) != 0 {
		t.Fatalf("edges of deleted group remain: %+v", rels)
	}
	_, err = s.GetGroup(ctx(t), g.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testRelationships(t *testing.T, s store.Store) {
	u := &store.User{UserName: "owner"}
	must(t, s.CreateUser(ctx(t), u))
	kid := &store.User{UserName: "kid"}
	must(t, s.CreateUser(ctx(t), kid))
	th := newThing("R-1")
	must(t, s.CreateThing(ctx(t), th))
	uRef, kRef, tRef := store.Ref{Kind: store.KindUser, ID: u.ID}, store.Ref{Kind: store.KindUser, ID: kid.ID}, store.Ref{Kind: store.KindThing, ID: th.ID}
	owner := store.Relationship{Kind: store.RelOwner, From: uRef, To: tRef}
	must(t, s.AddRelationship(ctx(t), owner))
	wantErr(t, s.AddRelationship(ctx(t), owner), store.ErrConflict)
	must(t, s.AddRelationship(ctx(t), store.Relationship{Kind: store.RelGuardian, From: uRef, To: kRef}))
	tests := []struct {
		name string
		rel  store.Relationship
	}{
		{"missing from", store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: "nobody"}, To: tRef}},
		{"missing to", store.Relationship{Kind: store.RelOwner, From: uRef, To: store.Ref{Kind: store.KindThing, ID: "nothing"}}},
		{"wrong kind of end", store.Relationship{Kind: store.RelOwner, From: uRef, To: store.Ref{Kind: store.KindGroup, ID: th.ID}}},
		{"unknown kind of end", store.Relationship{Kind: store.RelOwner, From: uRef, To: store.Ref{Kind: "planet", ID: th.ID}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantErr(t, s.AddRelationship(ctx(t), tt.rel), store.ErrNotFound) })
	}
	rels, err := s.ListRelationships(ctx(t), store.RelFilter{From: &uRef})
	must(t, err)
	if len(rels) != 2 || rels[0].Created.IsZero() {
		t.Fatalf("from user: %+v", rels)
	}
	rels, err = s.ListRelationships(ctx(t), store.RelFilter{Kind: store.RelOwner, To: &tRef})
	must(t, err)
	if len(rels) != 1 || rels[0].From != uRef {
		t.Fatalf("owners of thing: %+v", rels)
	}
	// Owner filter on things.
	_, n, err := s.ListThings(ctx(t), store.Query{Filter: store.Compare{Field: "owners", Op: store.OpEq, Value: u.ID}})
	must(t, err)
	if n != 1 {
		t.Fatalf("things owned: %d", n)
	}
	must(t, s.RemoveRelationship(ctx(t), owner))
	wantErr(t, s.RemoveRelationship(ctx(t), owner), store.ErrNotFound)
	must(t, s.AddRelationship(ctx(t), owner))
	// Deleting the thing deletes its edges.
	must(t, s.DeleteThing(ctx(t), th.ID, 0))
	rels, err = s.ListRelationships(ctx(t), store.RelFilter{Kind: store.RelOwner})
	must(t, err)
	if len(rels) != 0 {
		t.Fatalf("edges of deleted thing: %+v", rels)
	}
	must(t, s.DeleteUser(ctx(t), kid.ID, 0))
	rels, err = s.ListRelationships(ctx(t), store.RelFilter{})
	must(t, err)
	if len(rels) != 0 {
		t.Fatalf("edges of deleted user: %+v", rels)
	}
}

func testAudit(t *testing.T, s store.Store) {
	target := store.Ref{Kind: store.KindThing, ID: "t1"}
	at := time.Date(2025, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600))
	must(t, s.AppendAudit(ctx(t),
		store.AuditRecord{Actor: "system", Action: "thing.create", Target: target, Detail: json.RawMessage(`{"serial":"SN-1"}`), Time: at},
		store.AuditRecord{Actor: "cli", Action: "user.create", Target: store.Ref{Kind: store.KindUser, ID: "u1"}},
	))
	must(t, s.AppendAudit(ctx(t), store.AuditRecord{Actor: "system", Action: "thing.update", Target: target}))
	all, err := s.ListAudit(ctx(t), store.AuditQuery{})
	must(t, err)
	if len(all) != 3 || !(all[0].Seq < all[1].Seq && all[1].Seq < all[2].Seq) {
		t.Fatalf("audit: %+v", all)
	}
	if !all[0].Time.Equal(at.Truncate(time.Microsecond)) || string(all[0].Detail) != `{"serial":"SN-1"}` || all[1].Detail != nil || all[1].Time.IsZero() {
		t.Fatalf("audit record: %+v", all[0])
	}
	got, err := s.ListAudit(ctx(t), store.AuditQuery{Target: &target})
	must(t, err)
	if len(got) != 2 || got[1].Action != "thing.update" {
		t.Fatalf("by target: %+v", got)
	}
	got, err = s.ListAudit(ctx(t), store.AuditQuery{AfterSeq: all[0].Seq, Limit: 1})
	must(t, err)
	if len(got) != 1 || got[0].Seq != all[1].Seq {
		t.Fatalf("after/limit: %+v", got)
	}
	if err := s.AppendAudit(ctx(t), store.AuditRecord{Actor: "x", Action: "y", Detail: json.RawMessage(`{`)}); err == nil {
		t.Fatal("invalid JSON detail accepted")
	}
	// store.Audit has no way to change a record; the backends test that raw
	// SQL cannot either.
}

func testAPITokens(t *testing.T, s store.Store) {
	tok := &store.APIToken{Name: "ci", Hash: []byte{1, 2, 3, 4}, UserID: "admin", ExpiresAt: time.Now().Add(time.Hour)}
	must(t, s.CreateAPIToken(ctx(t), tok))
	if tok.ID == "" || tok.Created.IsZero() {
		t.Fatalf("token meta: %+v", tok)
	}
	got, err := s.GetAPITokenByHash(ctx(t), []byte{1, 2, 3, 4})
	must(t, err)
	if got.ID != tok.ID || got.Name != "ci" || got.UserID != "admin" || !got.ExpiresAt.Equal(tok.ExpiresAt) || !got.Created.Equal(tok.Created) {
		t.Fatalf("token: %+v want %+v", got, tok)
	}
	wantErr(t, s.CreateAPIToken(ctx(t), &store.APIToken{Name: "dup", Hash: []byte{1, 2, 3, 4}, UserID: "admin"}), store.ErrConflict)
	never := &store.APIToken{Name: "forever", Hash: []byte{9}, UserID: "admin"}
	must(t, s.CreateAPIToken(ctx(t), never))
	got, err = s.GetAPITokenByHash(ctx(t), []byte{9})
	must(t, err)
	if !got.ExpiresAt.IsZero() {
		t.Fatalf("no expiry: %v", got.ExpiresAt)
	}
	_, err = s.GetAPITokenByHash(ctx(t), []byte{7})
	wantErr(t, err, store.ErrNotFound)
	must(t, s.CreateAPIToken(ctx(t), &store.APIToken{Name: "other", Hash: []byte{8}, UserID: "someone"}))
	list, err := s.ListAPITokens(ctx(t), "admin")
	must(t, err)
	if len(list) != 2 || list[0].ID != tok.ID || list[1].ID != never.ID || list[0].Name != "ci" || !list[0].ExpiresAt.Equal(tok.ExpiresAt) || !list[1].ExpiresAt.IsZero() {
		t.Fatalf("admin's tokens: %+v", list)
	}
	if list, err = s.ListAPITokens(ctx(t), ""); err != nil || len(list) != 3 {
		t.Fatalf("everybody's tokens: %d %v", len(list), err)
	}
	if list, err = s.ListAPITokens(ctx(t), "nobody"); err != nil || len(list) != 0 {
		t.Fatalf("nobody's tokens: %+v %v", list, err)
	}
	must(t, s.DeleteAPIToken(ctx(t), tok.ID))
	wantErr(t, s.DeleteAPIToken(ctx(t), tok.ID), store.ErrNotFound)
	_, err = s.GetAPITokenByHash(ctx(t), []byte{1, 2, 3, 4})
	wantErr(t, err, store.ErrNotFound)
}

func testConcurrentUpdates(t *testing.T, s store.Store) {
	th := newThing("C-1")
	th.Attributes = map[string]any{"counter": 0.0}
	must(t, s.CreateThing(ctx(t), th))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := s.UpdateThing(ctx(t), th.ID, 0, func(th *store.Thing) error {
				th.Attributes["counter"] = th.Attributes["counter"].(float64) + 1
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	got, err := s.GetThing(ctx(t), th.ID)
	must(t, err)
	if got.Attributes["counter"] != 20.0 || got.Revision != 21 {
		t.Fatalf("counter %v revision %d, want 20 and 21", got.Attributes["counter"], got.Revision)
	}
}

func testConcurrentCreates(t *testing.T, s store.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Go(func() {
			name := "racer"
			if i%2 == 1 {
				name = "RACER"
			}
			errs <- s.CreateUser(ctx(t), &store.User{UserName: name})
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("want ErrConflict, got %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d creates succeeded, want 1", ok)
	}
}

func testWithTx(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	var th *store.Thing
	err := s.WithTx(ctx(t), func(tx store.Tx) error {
		u := &store.User{UserName: "ghost"}
		if err := tx.CreateUser(ctx(t), u); err != nil {
			return err
		}
		th = newThing("TX-1", "30:00:00:00:00:01")
		if err := tx.CreateThing(ctx(t), th); err != nil {
			return err
		}
		if err := tx.AddRelationship(ctx(t), store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
			return err
		}
		if err := tx.AppendAudit(ctx(t), store.AuditRecord{Actor: "system", Action: "user.create"}); err != nil {
			return err
		}
		// Reads inside the transaction see its writes.
		if _, err := tx.GetUserByName(ctx(t), "GHOST"); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, err, boom)
	_, err = s.GetUserByName(ctx(t), "ghost")
	wantErr(t, err, store.ErrNotFound)
	_, n, err := s.ListThings(ctx(t), store.Query{})
	must(t, err)
	recs, err := s.ListAudit(ctx(t), store.AuditQuery{})
	must(t, err)
	rels, err := s.ListRelationships(ctx(t), store.RelFilter{})
	must(t, err)
	if n != 0 || len(recs) != 0 || len(rels) != 0 {
		t.Fatalf("rollback left %d things, %d audit records, %d relationships", n, len(recs), len(rels))
	}
	// The MAC is free: the rolled-back thing's row is gone.
	must(t, s.CreateThing(ctx(t), newThing("TX-1", "30:00:00:00:00:01")))
	// A committed transaction.
	must(t, s.WithTx(ctx(t), func(tx store.Tx) error { return tx.CreateUser(ctx(t), &store.User{UserName: "real"}) }))
	_, err = s.GetUserByName(ctx(t), "real")
	must(t, err)
	must(t, s.Ping(ctx(t)))
}

func testStale(t *testing.T, s store.Store) {
	u := &store.User{UserName: "stale"}
	must(t, s.CreateUser(ctx(t), u))
	_, err := s.UpdateUser(ctx(t), u.ID, 1, func(u *store.User) error { u.Locale = "fr"; return nil })
	must(t, err)
	_, err = s.UpdateUser(ctx(t), u.ID, 1, func(u *store.User) error { u.Locale = "de"; return nil })
	wantErr(t, err, store.ErrStale)
	g := &store.Group{DisplayName: "g"}
	must(t, s.CreateGroup(ctx(t), g))
	_, err = s.UpdateGroup(ctx(t), g.ID, 5, func(*store.Group) error { return nil })
	wantErr(t, err, store.ErrStale)
	wantErr(t, s.DeleteGroup(ctx(t), g.ID, 5), store.ErrStale)
	th := newThing("ST-1")
	must(t, s.CreateThing(ctx(t), th))
	_, err = s.UpdateThing(ctx(t), th.ID, 2, func(*store.Thing) error { return nil })
	wantErr(t, err, store.ErrStale)
	wantErr(t, s.DeleteThing(ctx(t), th.ID, 2), store.ErrStale)
	must(t, s.DeleteThing(ctx(t), th.ID, 1))
}

// equalJSON compares two values by their JSON form (times compare by instant
// once both are UTC).
func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	_ = json.Unmarshal(ja, &va)
	_ = json.Unmarshal(jb, &vb)
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return string(ca) == string(cb)
}

func sameRefs(a, b []store.Ref) bool {
	key := func(r store.Ref) string { return string(r.Kind) + "/" + r.ID }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i, r := range a {
		ka[i] = key(r)
	}
	for i, r := range b {
		kb[i] = key(r)
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}
