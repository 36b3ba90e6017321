package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Households runs the conformance suite of store.Households; open returns a
// fresh, empty store for each subtest.
func Households(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Household", testHousehold},
		{"MembersRoomsPlacements", testHouseholdContents},
		{"Invitations", testInvitations},
		{"Cascades", testHouseholdCascades},
		{"PlatformPolicies", testPlatformPolicies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// newHousehold stores a group, its household, a user and a thing.
func newHousehold(t *testing.T, s store.Store, name string) (*store.Household, *store.User, *store.Thing) {
	t.Helper()
	ctx := t.Context()
	g := &store.Group{DisplayName: name}
	must(t, s.CreateGroup(ctx, g))
	h := &store.Household{ID: g.ID, TimeZone: "Europe/Berlin"}
	must(t, s.CreateHousehold(ctx, h))
	u := &store.User{UserName: name + "-parent", Status: store.StatusActive}
	must(t, s.CreateUser(ctx, u))
	th := &store.Thing{DisplayName: name + " speaker", Type: store.ThingDevice, Status: store.StatusActive}
	must(t, s.CreateThing(ctx, th))
	return h, u, th
}

func testHousehold(t *testing.T, s store.Store) {
	ctx := t.Context()
	h, _, _ := newHousehold(t, s, "home")
	if h.Revision != 1 || h.Created.IsZero() {
		t.Fatalf("create: %+v", h)
	}
	if err := s.CreateHousehold(ctx, &store.Household{ID: h.ID, TimeZone: "UTC"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("twice: %v, want ErrConflict", err)
	}
	if err := s.CreateHousehold(ctx, &store.Household{ID: "no-such-group", TimeZone: "UTC"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("without a group: %v, want ErrNotFound", err)
	}
	got, err := s.GetHousehold(ctx, h.ID)
	if err != nil || got.TimeZone != "Europe/Berlin" || string(got.Rules) != "[]" {
		t.Fatalf("get: %+v %s, %v", got, got.Rules, err)
	}
	rules := json.RawMessage(`[{"id":"r1","effect":"allow"}]`)
	up, err := s.UpdateHousehold(ctx, h.ID, 1, func(x *store.Household) error { x.TimeZone, x.Rules = "America/New_York", rules; return nil })
	if err != nil || up.Revision != 2 {
		t.Fatalf("update: %+v, %v", up, err)
	}
	got, _ = s.GetHousehold(ctx, h.ID)
	var back []map[string]string
	if got.TimeZone != "America/New_York" || json.Unmarshal(got.Rules, &back) != nil || len(back) != 1 || back[0]["id"] != "r1" {
		t.Fatalf("after update: %+v %s", got, got.Rules)
	}
	if _, err := s.UpdateHousehold(ctx, h.ID, 1, func(*store.Household) error { return nil }); !errors.Is(err, store.ErrStale) {
		t.Fatalf("stale revision: %v", err)
	}
	if _, err := s.GetHousehold(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

func testHouseholdContents(t *testing.T, s store.Store) {
	ctx := t.Context()
	h, u, th := newHousehold(t, s, "home")
	other, _, _ := newHousehold(t, s, "next door")
	must(t, s.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: h.ID, UserID: u.ID, Role: "guardian"}))
	must(t, s.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: h.ID, UserID: u.ID, Role: "dependant"}))
	if ms, err := s.ListHouseholdMembers(ctx, h.ID); err != nil || len(ms) != 1 || ms[0].Role != "dependant" {
		t.Fatalf("members: %+v, %v", ms, err)
	}
	if ms, err := s.ListMemberships(ctx, u.ID); err != nil || len(ms) != 1 || ms[0].HouseholdID != h.ID {
		t.Fatalf("memberships: %+v, %v", ms, err)
	}
	if err := s.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: h.ID, UserID: "ghost", Role: "guest"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	kids := &store.Room{HouseholdID: h.ID, Name: "Kids"}
	must(t, s.CreateRoom(ctx, kids))
	if err := s.CreateRoom(ctx, &store.Room{HouseholdID: h.ID, Name: "KIDS"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("same name: %v", err)
	}
	must(t, s.CreateRoom(ctx, &store.Room{HouseholdID: other.ID, Name: "Kids"})) // another household may
	if rs, err := s.ListRooms(ctx, h.ID); err != nil || len(rs) != 1 || rs[0].ID != kids.ID {
		t.Fatalf("rooms: %+v, %v", rs, err)
	}
	otherRooms, _ := s.ListRooms(ctx, other.ID)
	// A thing goes only in a room of the household named.
	if err := s.PlaceThing(ctx, &store.Placement{ThingID: th.ID, HouseholdID: h.ID, RoomID: otherRooms[0].ID, OwnerID: u.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a room of another household: %v", err)
	}
	must(t, s.PlaceThing(ctx, &store.Placement{ThingID: th.ID, HouseholdID: h.ID, RoomID: kids.ID, OwnerID: u.ID}))
	if p, err := s.GetPlacement(ctx, th.ID); err != nil || p.RoomID != kids.ID || p.OwnerID != u.ID {
		t.Fatalf("placement: %+v, %v", p, err)
	}
	// Moving it to the other household takes it out of this one.
	must(t, s.PlaceThing(ctx, &store.Placement{ThingID: th.ID, HouseholdID: other.ID, RoomID: otherRooms[0].ID, OwnerID: u.ID}))
	if ps, err := s.ListPlacements(ctx, h.ID); err != nil || len(ps) != 0 {
		t.Fatalf("placements after the move: %+v, %v", ps, err)
	}
	must(t, s.PlaceThing(ctx, &store.Placement{ThingID: th.ID, HouseholdID: h.ID, RoomID: kids.ID, OwnerID: u.ID}))
	// Deleting the room takes its things out.
	must(t, s.DeleteRoom(ctx, h.ID, kids.ID))
	if _, err := s.GetPlacement(ctx, th.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("placement after its room was deleted: %v", err)
	}
	if err := s.DeleteRoom(ctx, h.ID, otherRooms[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting another household's room: %v", err)
	}
	must(t, s.RemoveHouseholdMember(ctx, h.ID, u.ID))
	if err := s.RemoveHouseholdMember(ctx, h.ID, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing twice: %v", err)
	}
}

func testInvitations(t *testing.T, s store.Store) {
	ctx := t.Context()
	h, _, _ := newHousehold(t, s, "home")
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	// Nobody needs to hold the name or the address: invitations wait.
	byName := &store.Invitation{HouseholdID: h.ID, UserName: "Émma", Role: "dependant", InvitedBy: "someone", ExpiresAt: exp}
	must(t, s.CreateInvitation(ctx, byName))
	if byName.ID == "" || byName.UserName != "émma" {
		t.Fatalf("created: %+v", byName)
	}
	byMail := &store.Invitation{HouseholdID: h.ID, Email: "Gran@Example.ORG", Role: "guest", InvitedBy: "someone", ExpiresAt: exp}
	must(t, s.CreateInvitation(ctx, byMail))
	got, err := s.GetInvitation(ctx, byName.ID)
	if err != nil || got.Role != "dependant" || !got.ExpiresAt.Equal(exp) || got.UserName != "émma" || got.Email != "" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	for _, c := range []struct {
		f    store.InvitationFilter
		want int
	}{
		{store.InvitationFilter{HouseholdID: h.ID}, 2},
		{store.InvitationFilter{UserName: "ÉMMA"}, 1},
		{store.InvitationFilter{UserName: "émma", Email: "gran@example.org"}, 2},
		{store.InvitationFilter{HouseholdID: h.ID, Email: "GRAN@example.org"}, 1},
		{store.InvitationFilter{UserName: "other"}, 0},
		{store.InvitationFilter{Email: "emma"}, 0},
		{store.InvitationFilter{HouseholdID: "other"}, 0},
	} {
		if l, err := s.ListInvitations(ctx, c.f); err != nil || len(l) != c.want {
			t.Fatalf("list %+v: %+v, %v; want %d", c.f, l, err, c.want)
		}
	}
	if err := s.CreateInvitation(ctx, &store.Invitation{HouseholdID: "ghost", UserName: "x", Role: "guest", ExpiresAt: exp}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown household: %v", err)
	}
	for _, bad := range []store.Invitation{{HouseholdID: h.ID, Role: "guest", ExpiresAt: exp}, {HouseholdID: h.ID, UserName: "a", Email: "a@b", Role: "guest", ExpiresAt: exp}} {
		if err := s.CreateInvitation(ctx, &bad); err == nil {
			t.Fatalf("an invitation naming %q and %q was stored", bad.UserName, bad.Email)
		}
	}
	must(t, s.DeleteInvitation(ctx, byName.ID))
	if err := s.DeleteInvitation(ctx, byName.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

// Deleting a thing, a user or the household's group deletes what refers to it.
func testHouseholdCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	h, u, th := newHousehold(t, s, "home")
	room := &store.Room{HouseholdID: h.ID, Name: "Living"}
	must(t, s.CreateRoom(ctx, room))
	must(t, s.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: h.ID, UserID: u.ID, Role: "guardian"}))
	must(t, s.PlaceThing(ctx, &store.Placement{ThingID: th.ID, HouseholdID: h.ID, RoomID: room.ID, OwnerID: u.ID}))
	must(t, s.DeleteThing(ctx, th.ID, 0))
	if ps, _ := s.ListPlacements(ctx, h.ID); len(ps) != 0 {
		t.Fatalf("placement of a deleted thing: %+v", ps)
	}
	must(t, s.CreateInvitation(ctx, &store.Invitation{HouseholdID: h.ID, UserName: u.UserName, Role: "guest", ExpiresAt: time.Now().Add(time.Hour)}))
	must(t, s.DeleteUser(ctx, u.ID, 0))
	if ms, _ := s.ListHouseholdMembers(ctx, h.ID); len(ms) != 0 {
		t.Fatalf("membership of a deleted user: %+v", ms)
	}
	must(t, s.DeleteGroup(ctx, h.ID, 0))
	if _, err := s.GetHousehold(ctx, h.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("household of a deleted group: %v", err)
	}
	if rs, _ := s.ListRooms(ctx, h.ID); len(rs) != 0 {
		t.Fatalf("rooms of a deleted household: %+v", rs)
	}
	if l, _ := s.ListInvitations(ctx, store.InvitationFilter{HouseholdID: h.ID}); len(l) != 0 {
		t.Fatalf("invitations of a deleted household: %+v", l)
	}
}

func testPlatformPolicies(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.GetPlatformPolicies(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any: %v", err)
	}
	p := &store.PlatformPolicies{Source: "permit (principal, action, resource);", ModifiedBy: "admin:a"}
	if err := s.PutPlatformPolicies(ctx, p, 1); !errors.Is(err, store.ErrStale) {
		t.Fatalf("expecting revision 1 of nothing: %v", err)
	}
	must(t, s.PutPlatformPolicies(ctx, p, 0))
	if p.Revision != 1 || p.Modified.IsZero() {
		t.Fatalf("first: %+v", p)
	}
	q := &store.PlatformPolicies{Source: "forbid (principal, action, resource);", ModifiedBy: "admin:b"}
	must(t, s.PutPlatformPolicies(ctx, q, 1))
	if err := s.PutPlatformPolicies(ctx, &store.PlatformPolicies{Source: "x"}, 1); !errors.Is(err, store.ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	got, err := s.GetPlatformPolicies(ctx)
	if err != nil || got.Revision != 2 || got.Source != q.Source || got.ModifiedBy != "admin:b" {
		t.Fatalf("get: %+v, %v", got, err)
	}
}

// InvitationsUpgrade checks migration 0015 on a backend: an invitation
// stored for an account before it (invitee_id) names that account's user
// name after it. open opens (and migrates) the one database of the test;
// revert takes the database back to before 0015, with one invitation of
// the household for the user, while no store has it open.
func InvitationsUpgrade(t *testing.T, open func(t *testing.T) store.Store, revert func(t *testing.T, householdID, userID string)) {
	s := open(t)
	h, u, _ := newHousehold(t, s, "Upgrade")
	must(t, s.Close())
	revert(t, h.ID, u.ID)
	s = open(t)
	defer s.Close()
	l, err := s.ListInvitations(t.Context(), store.InvitationFilter{UserName: "UPGRADE-parent"})
	if err != nil || len(l) != 1 || l[0].HouseholdID != h.ID || l[0].UserName != "upgrade-parent" || l[0].Email != "" || l[0].Role != "guest" {
		t.Fatalf("after the upgrade: %+v, %v", l, err)
	}
}
