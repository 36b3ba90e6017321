package household

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

type fixture struct {
	st          store.Store
	bus         *events.Bus
	ids         *identity.Service
	svc         *Service
	now         time.Time
	mum, emma   *store.User
	speaker     *store.Thing
	hh, kidRoom string
}

// newFixture is a household on a real SQLite store: mum (guardian), emma
// (dependant), mum's speaker in the kids' room, and an engine whose clock
// the test sets.
func newFixture(t *testing.T) *fixture {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, bus: events.New()}
	f.ids = identity.New(st, f.bus, password.Policy{})
	f.svc, err = New(Options{Store: st, Identities: f.ids, Engine: policy.NewEngine(func() time.Time { return f.now }, nil), Bus: f.bus})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name string) *store.User {
		u, err := f.ids.CreateUser(ctx, "test", &store.User{UserName: name, DisplayName: strings.ToUpper(name[:1]) + name[1:]}, "")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	f.mum, f.emma = mk("mum"), mk("emma")
	if f.speaker, err = f.ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "Speaker", Type: store.ThingDevice, Status: store.StatusActive}); err != nil {
		t.Fatal(err)
	}
	if err := f.ids.AddRelationship(ctx, "test", f.owner()); err != nil {
		t.Fatal(err)
	}
	if f.hh, err = f.svc.Create(ctx, f.mum, "Smiths", "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	inv, err := f.svc.Invite(ctx, f.mum, f.hh, "emma", "", policy.Dependant)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Accept(ctx, f.emma, inv.ID); err != nil {
		t.Fatal(err)
	}
	room, err := f.svc.AddRoom(ctx, f.mum, f.hh, "Kids' room")
	if err != nil {
		t.Fatal(err)
	}
	f.kidRoom = room.ID
	if err := f.svc.Place(ctx, f.mum, f.hh, f.speaker.ID, room.ID); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) owner() store.Relationship {
	return store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: f.mum.ID}, To: store.Ref{Kind: store.KindThing, ID: f.speaker.ID}}
}

func (f *fixture) rule(start, end string) policy.Rule {
	return policy.Rule{Effect: policy.Allow, Who: policy.Who{Kind: policy.OneMember, Member: f.emma.ID},
		Things: policy.Things{Kind: policy.InRoom, ID: f.kidRoom}, Actions: []policy.Action{policy.Use}, When: policy.When{Start: start, End: end}}
}

func (f *fixture) decide(t *testing.T) policy.Decision {
	t.Helper()
	d, err := f.svc.Decide(context.Background(), policy.Request{UserID: f.emma.ID, ThingID: f.speaker.ID, Action: policy.Use})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A change of rules, through the service or announced by another node on
// the bus, reaches the next decision.
func TestDecisionsFollowChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.now = time.Date(2025, 3, 17, 19, 30, 0, 0, time.UTC) // 20:30 in Berlin
	if d := f.decide(t); d.Allowed || !strings.HasPrefix(d.Reason, "no rule allows Emma") {
		t.Fatalf("no rules: %+v", d)
	}
	if _, err := f.svc.SetRules(ctx, f.mum, f.hh, []policy.Rule{f.rule("07:00", "21:00")}); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); !d.Allowed {
		t.Fatalf("after allowing until 21:00: %+v", d)
	}
	// Another node writes the rules and announces it.
	body, _ := json.Marshal([]policy.Rule{func() policy.Rule { r := f.rule("07:00", "20:00"); r.ID = "r2"; return r }()})
	if _, err := f.st.UpdateHousehold(ctx, f.hh, 0, func(h *store.Household) error { h.Rules = body; return nil }); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(events.Event{Type: EventChanged, Kind: "household", ID: f.hh})
	if d := f.decide(t); d.Allowed || d.Rule != "r2" || !strings.HasPrefix(d.Reason, "outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00") {
		t.Fatalf("after another node's change: %+v", d)
	}
	// So does a change of time zone: 19:30 UTC is 15:30 in New York.
	if err := f.svc.SetTimeZone(ctx, f.mum, f.hh, "America/New_York"); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); !d.Allowed || d.Local.Hour() != 15 {
		t.Fatalf("in New York: %+v", d)
	}
	// Where a thing is placed is remembered between decisions, and forgotten
	// when it moves.
	if err := f.svc.Unplace(ctx, f.mum, f.hh, f.speaker.ID); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); d.Allowed || d.Household != "" {
		t.Fatalf("taken out of the household: %+v", d)
	}
	if err := f.svc.Place(ctx, f.mum, f.hh, f.speaker.ID, f.kidRoom); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); !d.Allowed {
		t.Fatalf("placed again: %+v", d)
	}
}

// A thing its owner unlinked, or whose owner left, is no longer the
// household's: its rules no longer allow anything with it.
func TestThingLeavesWithItsOwner(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.now = time.Date(2025, 3, 17, 10, 0, 0, 0, time.UTC)
	if _, err := f.svc.SetRules(ctx, f.mum, f.hh, []policy.Rule{f.rule("07:00", "21:00")}); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); !d.Allowed {
		t.Fatalf("placed: %+v", d)
	}
	if err := f.ids.RemoveRelationship(ctx, "test", f.owner()); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); d.Allowed {
		t.Fatalf("after the unlink: %+v", d)
	}
	if err := f.ids.AddRelationship(ctx, "test", f.owner()); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); !d.Allowed {
		t.Fatalf("linked again: %+v", d)
	}
	// Emma promoted, mum leaves: her speaker leaves with her.
	if err := f.svc.SetRole(ctx, f.mum, f.hh, f.emma.ID, policy.Guardian); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.RemoveMember(ctx, f.mum, f.hh, f.mum.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.GetPlacement(ctx, f.speaker.ID); err == nil {
		t.Fatal("the speaker stayed placed after its owner left")
	}
	if d := f.decide(t); d.Allowed {
		t.Fatalf("after the owner left: %+v", d)
	}
}

// Invitations: only the invitee accepts, once, before expiry; an
// invitation waits for a name or an address nobody holds yet, and an
// address counts once verified.
func TestInvitations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	gran, err := f.ids.CreateUser(ctx, "test", &store.User{UserName: "gran"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := f.svc.Invite(ctx, f.mum, f.hh, "ＧＲＡＮ", "", policy.Guest)
	if err != nil {
		t.Fatal(err)
	}
	for _, by := range []*store.User{f.mum, f.emma} {
		if err := f.svc.Accept(ctx, by, inv.ID); err == nil || err.(*Error).Status != 404 {
			t.Fatalf("accepted by %s: %v", by.UserName, err)
		}
	}
	if err := f.svc.Accept(ctx, gran, inv.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Accept(ctx, gran, inv.ID); err == nil {
		t.Fatal("accepted twice")
	}

	// A name nobody holds: the invitation waits for whoever takes it.
	kimInv, err := f.svc.Invite(ctx, f.mum, f.hh, "Kim", "", policy.Dependant)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Invite(ctx, f.mum, f.hh, "KIM", "", policy.Guest); err == nil || err.(*Error).Status != 409 || err.(*Error).Field != "userName" {
		t.Fatalf("inviting the same name twice: %v", err)
	}
	kim, err := f.ids.CreateUser(ctx, "test", &store.User{UserName: "kim"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if l, err := f.svc.Invitations(ctx, kim); err != nil || len(l) != 1 || l[0].ID != kimInv.ID {
		t.Fatalf("kim's invitations: %+v, %v", l, err)
	}
	if err := f.svc.Accept(ctx, kim, kimInv.ID); err != nil {
		t.Fatal(err)
	}

	// An address counts once its holder has verified it.
	zoe, err := f.ids.CreateUser(ctx, "test", &store.User{UserName: "zoe", Emails: []store.MultiValue{{Value: "zoe@example.org", Primary: true}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	zoeInv, err := f.svc.Invite(ctx, f.mum, f.hh, "", "Zoe@Example.org", policy.Guest)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := f.svc.Invitations(ctx, zoe); len(l) != 0 {
		t.Fatalf("an unverified address found invitations: %+v", l)
	}
	if err := f.svc.Accept(ctx, zoe, zoeInv.ID); err == nil || err.(*Error).Status != 404 {
		t.Fatalf("accepted through an unverified address: %v", err)
	}
	zoe.EmailVerified = true
	if l, _ := f.svc.Invitations(ctx, zoe); len(l) != 1 {
		t.Fatalf("the verified address finds no invitation: %+v", l)
	}
	// A member already keeps the role the guardians gave.
	emmaInv, err := f.svc.Invite(ctx, f.mum, f.hh, "emma", "", policy.Guardian)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Accept(ctx, f.emma, emmaInv.ID); err == nil || err.(*Error).Status != 409 {
		t.Fatalf("a member accepted an invitation: %v", err)
	}
	if err := f.svc.Decline(ctx, f.emma, emmaInv.ID); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, email, field string }{
		{"", "", "userName"}, {"a", "a@example.org", "userName"}, {"", "not an address", "email"},
		{"", "Eve <eve@example.org>", "email"}, {"a\x00b", "", "userName"}, {strings.Repeat("n", 257), "", "userName"},
	} {
		if _, err := f.svc.Invite(ctx, f.mum, f.hh, bad.name, bad.email, policy.Guest); err == nil || err.(*Error).Field != bad.field {
			t.Errorf("inviting %q %q: %v, want an error naming %s", bad.name, bad.email, err, bad.field)
		}
	}

	expired := &store.Invitation{HouseholdID: f.hh, UserName: "gran", Role: "guardian", InvitedBy: f.mum.ID, ExpiresAt: time.Now().Add(-time.Minute)}
	if err := f.st.CreateInvitation(ctx, expired); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Accept(ctx, gran, expired.ID); err == nil || err.(*Error).Status != 410 {
		t.Fatalf("expired: %v", err)
	}
	// The next invitation clears the expired ones away.
	if _, err := f.svc.Invite(ctx, f.mum, f.hh, "someone", "", policy.Guest); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.GetInvitation(ctx, expired.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the expired invitation stayed: %v", err)
	}
}

// A platform set stored by another node reaches this one's decisions through
// the event path.
func TestPlatformSetFromAnotherNode(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.now = time.Date(2025, 3, 17, 10, 0, 0, 0, time.UTC)
	if _, err := f.svc.SetRules(ctx, f.mum, f.hh, []policy.Rule{f.rule("07:00", "21:00")}); err != nil {
		t.Fatal(err)
	}
	if d := f.decide(t); !d.Allowed {
		t.Fatalf("before: %+v", d)
	}
	src := `@reason("closed for maintenance") forbid (principal, action, resource);`
	if err := f.st.PutPlatformPolicies(ctx, &store.PlatformPolicies{Source: src, ModifiedBy: "admin:other-node"}, 0); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(events.Event{Type: EventPlatform, Kind: "policy", ID: "platform"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := f.decide(t)
		if !d.Allowed && d.Reason == "denied: closed for maintenance" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stored set never reached the engine: %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new service (a restarted node) starts with it.
	svc, err := New(Options{Store: f.st, Identities: f.ids, Engine: policy.NewEngine(func() time.Time { return f.now }, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := svc.Decide(ctx, policy.Request{UserID: f.emma.ID, ThingID: f.speaker.ID, Action: policy.Use}); d.Allowed {
		t.Fatalf("after a restart: %+v", d)
	}
}

// Watch tells a door of each change once the service has applied it, so
// that a decision made from the watcher is already the new one: a rule
// change announced by another node, a new platform set (loaded after the
// event, off the bus), and a thing placed, named in the event.
func TestWatchSeesAppliedChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.now = time.Date(2025, 3, 17, 10, 0, 0, 0, time.UTC)
	type seen struct {
		e events.Event
		d policy.Decision
	}
	got := make(chan seen, 10)
	stop := f.svc.Watch(func(e events.Event) {
		d, err := f.svc.Decide(ctx, policy.Request{UserID: f.emma.ID, ThingID: f.speaker.ID, Action: policy.Use})
		if err != nil {
			t.Error(err)
		}
		got <- seen{e, d}
	})
	next := func(what string) seen {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no event", what)
			return seen{}
		}
	}
	if d := f.decide(t); d.Allowed {
		t.Fatalf("before: %+v", d)
	}
	body, _ := json.Marshal([]policy.Rule{func() policy.Rule { r := f.rule("07:00", "21:00"); r.ID = "r1"; return r }()})
	if _, err := f.st.UpdateHousehold(ctx, f.hh, 0, func(h *store.Household) error { h.Rules = body; return nil }); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(events.Event{Type: EventChanged, Kind: "household", ID: f.hh})
	if s := next("rules"); s.e.ID != f.hh || !s.d.Allowed || s.d.Rule != "r1" {
		t.Fatalf("another node's rules: %+v", s)
	}
	if err := f.st.PutPlatformPolicies(ctx, &store.PlatformPolicies{Source: `@reason("closed") forbid (principal, action, resource);`, ModifiedBy: "admin:other-node"}, 0); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(events.Event{Type: EventPlatform, Kind: "policy", ID: "platform"})
	if s := next("platform"); s.e.Type != EventPlatform || s.d.Allowed || s.d.Reason != "denied: closed" {
		t.Fatalf("the platform set: %+v", s)
	}
	if err := f.svc.Unplace(ctx, f.mum, f.hh, f.speaker.ID); err != nil {
		t.Fatal(err)
	}
	if s := next("unplace"); s.e.Details["thing"] != f.speaker.ID || s.e.Details["action"] != "household.thing.remove" || s.d.Household != "" {
		t.Fatalf("a thing taken out: %+v", s)
	}
	stop()
	if err := f.svc.Place(ctx, f.mum, f.hh, f.speaker.ID, f.kidRoom); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Fatalf("after stop: %+v", s)
	default:
	}
}
