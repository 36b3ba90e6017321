package identity

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

type recorder struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		out = append(out, e.Type)
	}
	return out
}

func newService(t *testing.T) (*Service, store.Store, *recorder) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "id.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bus := events.New()
	rec := &recorder{}
	bus.Subscribe(func(e events.Event) {
		rec.mu.Lock()
		rec.evs = append(rec.evs, e)
		rec.mu.Unlock()
	})
	return New(st, bus, password.Policy{MinLength: 15}), st, rec
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != field {
		t.Fatalf("err = %v, want a validation error on %q", err, field)
	}
}

func auditActions(t *testing.T, st store.Store) []string {
	t.Helper()
	recs, err := st.ListAudit(context.Background(), store.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Action)
	}
	return out
}

func TestUserValidation(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	cases := []struct {
		field string
		u     store.User
	}{
		{"userName", store.User{UserName: "  "}},
		{"userName", store.User{UserName: "bad\x00name"}},
		{"userName", store.User{UserName: strings.Repeat("x", 257)}},
		{"emails", store.User{UserName: "a", Emails: []store.MultiValue{{Value: "not-an-address"}}}},
		{"emails", store.User{UserName: "a", Emails: []store.MultiValue{{Value: "Alice <a@b.c>"}}}},
		{"emails", store.User{UserName: "a", Emails: []store.MultiValue{{Value: "a@b.c", Primary: true}, {Value: "d@e.f", Primary: true}}}},
		{"phoneNumbers", store.User{UserName: "a", PhoneNumbers: []store.MultiValue{{Value: "call me"}}}},
		{"locale", store.User{UserName: "a", Locale: "english please"}},
		{"timezone", store.User{UserName: "a", Timezone: "Mars/Olympus_Mons"}},
		{"timezone", store.User{UserName: "a", Timezone: "../../etc/passwd"}},
		{"status", store.User{UserName: "a", Status: "locked"}},
		{"displayName", store.User{UserName: "a", DisplayName: "line\nbreak"}},
	}
	for _, tc := range cases {
		u := tc.u
		_, err := s.CreateUser(ctx, "test", &u, "")
		wantField(t, err, tc.field)
	}
	_, err := s.CreateUser(ctx, "test", &store.User{UserName: "weak"}, "password")
	wantField(t, err, "password")
	if _, total, _ := st.ListUsers(ctx, store.Query{}); total != 0 {
		t.Errorf("%d users stored from bad input", total)
	}
	if a := auditActions(t, st); len(a) != 0 || len(rec.types()) != 0 {
		t.Errorf("audit %v / events %v from failed changes", a, rec.types())
	}
}

func TestUserLifecycleIsAuditedAndPublished(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "admin:1", &store.User{
		UserName: "alice", Emails: []store.MultiValue{{Value: "Alice@EXAMPLE.com", Primary: true}}, Timezone: "Europe/Berlin",
	}, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if u.Emails[0].Value != "Alice@example.com" || u.Status != store.StatusActive {
		t.Errorf("not normalized: %+v", u)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || strings.Contains(u.PasswordHash, "horse") {
		t.Errorf("password not hashed: %q", u.PasswordHash)
	}
	// A raw value smuggled into PasswordHash is refused.
	_, err = s.UpdateUser(ctx, "admin:1", u.ID, 0, func(u *store.User) error {
		u.PasswordHash = "plaintext"
		return nil
	})
	wantField(t, err, "password")
	h, err := s.HashPassword("a much better passphrase here", u)
	if err != nil {
		t.Fatal(err)
	}
	u, err = s.UpdateUser(ctx, "admin:1", u.ID, 0, func(u *store.User) error {
		u.Status = store.StatusDisabled
		u.PasswordHash = h
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := password.Verify(u.PasswordHash, "a much better passphrase here"); !ok {
		t.Error("new password does not verify")
	}
	if err := s.DeleteUser(ctx, "admin:1", u.ID, 0); err != nil {
		t.Fatal(err)
	}
	want := []string{"user.create", "user.update", "user.disable", "user.password", "user.delete"}
	if got := auditActions(t, st); !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
	if got := rec.types(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	recs, _ := st.ListAudit(ctx, store.AuditQuery{})
	if recs[0].Actor != "admin:1" || recs[0].Target.ID == "" {
		t.Errorf("audit record lacks actor or target: %+v", recs[0])
	}
}

func TestNewPasswordClearsMustChangePassword(t *testing.T) {
	s, st, _ := newService(t)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "test", &store.User{UserName: "ops", MustChangePassword: true}, "a one-time passphrase 1")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() *store.User {
		t.Helper()
		got, err := st.GetUser(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if !stored().MustChangePassword {
		t.Fatal("MustChangePassword not kept on create")
	}
	hash := func(pw string) string {
		t.Helper()
		h, err := s.HashPassword(pw, u)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	steps := []struct {
		name string
		fn   func(*store.User)
		want bool
	}{
		{"other change keeps the flag", func(u *store.User) { u.DisplayName = "Ops" }, true},
		{"new password clears it", func(u *store.User) { u.PasswordHash = hash("the user's own passphrase") }, false},
		{"reset that sets it keeps it", func(u *store.User) {
			u.PasswordHash, u.MustChangePassword = hash("an administrator reset 22"), true
		}, true},
		{"flag cleared explicitly", func(u *store.User) { u.MustChangePassword = false }, false},
		{"flag set without new password", func(u *store.User) { u.MustChangePassword = true }, true},
	}
	for _, st := range steps {
		got, err := s.UpdateUser(ctx, "test", u.ID, 0, func(u *store.User) error { st.fn(u); return nil })
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got.MustChangePassword != st.want || stored().MustChangePassword != st.want {
			t.Errorf("%s: MustChangePassword = %v (stored %v), want %v", st.name, got.MustChangePassword, stored().MustChangePassword, st.want)
		}
	}
}

// ResetPassword leaves a one-time password (also on a user who had one
// already), ends every session and is audited; a password the policy refuses
// changes nothing.
func TestResetPassword(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "test", &store.User{UserName: "carol"}, "carol's own passphrase")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := st.CreateSession(ctx, &store.Session{Hash: []byte{byte(i), 1, 2, 3}, UserID: u.ID, Created: time.Now(), LastSeen: time.Now(), AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pw := range []string{"a one-time passphrase 1", "a one-time passphrase 2"} {
		got, err := s.ResetPassword(ctx, "cli", u.ID, pw)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := password.Verify(got.PasswordHash, pw); !ok || err != nil || !got.MustChangePassword {
			t.Fatalf("after reset: verify %v %v, must change %v", ok, err, got.MustChangePassword)
		}
	}
	if list, err := st.ListSessions(ctx, u.ID); err != nil || len(list) != 0 {
		t.Fatalf("sessions after reset: %d %v", len(list), err)
	}
	if got := auditActions(t, st); strings.Join(got, " ") != "user.create user.password-reset session.terminate-all user.password-reset session.terminate-all" {
		t.Fatalf("audit %v", got)
	}
	if !slices.Contains(rec.types(), "user.password-reset") {
		t.Fatalf("events %v", rec.types())
	}
	before, _ := st.GetUser(ctx, u.ID)
	_, err = s.ResetPassword(ctx, "cli", u.ID, "short")
	wantField(t, err, "password")
	if after, _ := st.GetUser(ctx, u.ID); after.Revision != before.Revision {
		t.Fatal("a refused password changed the user")
	}
	if _, err := s.ResetPassword(ctx, "cli", "no-such-user", "a one-time passphrase 3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestThingValidation(t *testing.T) {
	s, st, _ := newService(t)
	ctx := context.Background()
	cases := []struct {
		field string
		th    store.Thing
	}{
		{"thingType", store.Thing{Type: "toaster"}},
		{"serialNumber", store.Thing{SerialNumber: " SN1"}},
		{"serialNumber", store.Thing{SerialNumber: strings.Repeat("9", 129)}},
		{"serialNumber", store.Thing{SerialNumber: "SN\u00e91"}},
		{"macAddresses", store.Thing{MACAddresses: []string{"00:11:22:33:44"}}},
		{"macAddresses", store.Thing{MACAddresses: []string{"zz:11:22:33:44:55"}}},
		{"jwks", store.Thing{JWKS: json.RawMessage(`{"kty":"EC"}`)}},
		{"jwks", store.Thing{JWKS: json.RawMessage(`{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret"}]}`)}},
		{"jwks", store.Thing{JWKS: json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)}},
		{"certificates.fingerprintSha256", store.Thing{Certificates: []store.CertRef{{FingerprintSHA256: "ABC"}}}},
		{"attributes", store.Thing{Attributes: map[string]any{"bad name": 1}}},
		{"attributes", store.Thing{Attributes: map[string]any{"big": strings.Repeat("x", 17<<10)}}},
		{"status", store.Thing{Status: "broken"}},
	}
	for _, tc := range cases {
		th := tc.th
		_, err := s.CreateThing(ctx, "test", &th)
		wantField(t, err, tc.field)
	}
	if _, total, _ := st.ListThings(ctx, store.Query{}); total != 0 {
		t.Errorf("%d things stored from bad input", total)
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"AA:BB:CC:DD:EE:FF":       "aa:bb:cc:dd:ee:ff",
		"aa-bb-cc-dd-ee-ff":       "aa:bb:cc:dd:ee:ff",
		"aabb.ccdd.eeff":          "aa:bb:cc:dd:ee:ff",
		"AABBCCDDEEFF":            "aa:bb:cc:dd:ee:ff",
		" 00:11:22:33:44:55 ":     "00:11:22:33:44:55",
		"00:11:22:33:44:55:66:77": "00:11:22:33:44:55:66:77",
	} {
		if got, err := NormalizeMAC(in); err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "aa:bb", "gg:bb:cc:dd:ee:ff", "00:00:5e:00:53:01:00:00:00:00:00:00:00:00:00:00:00:00:00:00", "aabbccddeeffgg", "xxxxxxxxxxxx"} {
		if got, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzNormalizeMAC(f *testing.F) {
	for _, s := range []string{"aa:bb:cc:dd:ee:ff", "aabb.ccdd.eeff", "AABBCCDDEEFF", "0011223344556677"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeMAC(s)
		if err != nil {
			return
		}
		// Normal form is a fixed point.
		if again, err := NormalizeMAC(n); err != nil || again != n {
			t.Fatalf("%q normalized to %q, which normalizes to %q, %v", s, n, again, err)
		}
	})
}

func TestCreateThingsReportsEachRow(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	if _, err := s.CreateThing(ctx, "test", &store.Thing{Manufacturer: "Acme", Model: "S1", SerialNumber: "SN-0", MACAddresses: []string{"00:00:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	batch := []*store.Thing{
		{Manufacturer: "Acme", Model: "S1", SerialNumber: "SN-1", MACAddresses: []string{"00-00-00-00-00-02"}},
		{Manufacturer: "Acme", Model: "S1", SerialNumber: "SN-0"},                                         // serial taken
		{Manufacturer: "Acme", Model: "S1", SerialNumber: "SN-2", MACAddresses: []string{"000000000001"}}, // MAC taken
		{Manufacturer: "Acme", Model: "S1", SerialNumber: "SN-3", MACAddresses: []string{"nope"}},         // invalid
		{Manufacturer: "Acme", Model: "S2", SerialNumber: "SN-0"},                                         // other model: fine
	}
	errs, err := s.CreateThings(ctx, "factory", batch)
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[4] != nil {
		t.Errorf("valid rows failed: %v", errs)
	}
	if !errors.Is(errs[1], store.ErrConflict) || !errors.Is(errs[2], store.ErrConflict) {
		t.Errorf("conflicts not reported: %v / %v", errs[1], errs[2])
	}
	wantField(t, errs[3], "macAddresses")
	if batch[0].MACAddresses[0] != "00:00:00:00:00:02" {
		t.Errorf("MAC not normalized: %v", batch[0].MACAddresses)
	}
	if _, total, _ := st.ListThings(ctx, store.Query{}); total != 3 {
		t.Errorf("%d things stored, want 3", total)
	}
	if n := len(auditActions(t, st)); n != 3 {
		t.Errorf("%d audit records, want one per stored thing (3)", n)
	}
	if n := len(rec.types()); n != 3 {
		t.Errorf("%d events, want 3", n)
	}
}

func TestThingDisableAndRelationships(t *testing.T) {
	s, _, rec := newService(t)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "test", &store.User{UserName: "bob"}, "")
	if err != nil {
		t.Fatal(err)
	}
	th, err := s.CreateThing(ctx, "test", &store.Thing{SerialNumber: "SN-9"})
	if err != nil {
		t.Fatal(err)
	}
	userRef, thingRef := store.Ref{Kind: store.KindUser, ID: u.ID}, store.Ref{Kind: store.KindThing, ID: th.ID}
	for _, bad := range []store.Relationship{
		{Kind: store.RelOwner, From: thingRef, To: userRef},
		{Kind: store.RelGuardian, From: userRef, To: thingRef},
		{Kind: store.RelGuardian, From: userRef, To: userRef},
		{Kind: store.RelMember, From: userRef, To: thingRef},
		{Kind: "friend", From: userRef, To: thingRef},
	} {
		if err := s.AddRelationship(ctx, "test", bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	own := store.Relationship{Kind: store.RelOwner, From: userRef, To: thingRef}
	if err := s.AddRelationship(ctx, "test", own); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRelationship(ctx, "test", own); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate edge: %v", err)
	}
	if err := s.RemoveRelationship(ctx, "test", own); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateThing(ctx, "test", th.ID, th.Revision, func(t *store.Thing) error {
		t.Status = store.StatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateThing(ctx, "test", th.ID, th.Revision, func(*store.Thing) error { return nil }); !errors.Is(err, store.ErrStale) {
		t.Errorf("stale revision: %v", err)
	}
	want := []string{"user.create", "thing.create", "relationship.add", "relationship.remove", "thing.update", "thing.disable"}
	if got := rec.types(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestGroupValidation(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	_, err := s.CreateGroup(ctx, "test", &store.Group{DisplayName: ""})
	wantField(t, err, "displayName")
	_, err = s.CreateGroup(ctx, "test", &store.Group{DisplayName: "g", Members: []store.Ref{{Kind: "robot", ID: "1"}}})
	wantField(t, err, "members.type")
	g, err := s.CreateGroup(ctx, "test", &store.Group{DisplayName: "family"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateGroup(ctx, "test", g.ID, 0, func(g *store.Group) error {
		g.Members = []store.Ref{{Kind: store.KindGroup, ID: g.ID}}
		return nil
	})
	wantField(t, err, "members")
}

// Identity changes made in a caller's transaction are audited and published only
// when it commits.
func TestWithTxCommitsOrDropsIdentityChanges(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	u, _ := s.CreateUser(ctx, "test", &store.User{UserName: "carol"}, "")
	th, _ := s.CreateThing(ctx, "test", &store.Thing{SerialNumber: "SN-T"})
	own := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}
	boom := errors.New("grant failed")
	err := s.WithTx(ctx, "user:"+u.ID, func(tx *Tx) error {
		if err := tx.AddRelationship(ctx, own); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if rels, _ := st.ListRelationships(ctx, store.RelFilter{To: &own.To}); len(rels) != 0 {
		t.Errorf("relationship kept after rollback: %v", rels)
	}
	if err := s.WithTx(ctx, "user:"+u.ID, func(tx *Tx) error {
		return tx.AddRelationship(ctx, store.Relationship{Kind: store.RelOwner, From: own.To, To: own.From})
	}); err == nil {
		t.Error("an invalid relationship passed validation inside WithTx")
	}
	if err := s.WithTx(ctx, "user:"+u.ID, func(tx *Tx) error { return tx.AddRelationship(ctx, own) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"user.create", "thing.create", "relationship.add"}
	if got := rec.types(); !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if got := auditActions(t, st); !slices.Equal(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
}
