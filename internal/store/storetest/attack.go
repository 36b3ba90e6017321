package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// Attack tries to break the store's security rules: SQL reaches the database
// only through bind parameters, LIKE wildcards are literal, private columns
// (the password hash in the user document) cannot be filtered or sorted on,
// updates cannot move a record to another id or revision, and ends of
// relationships exist with the kind they are given. Every backend's
// attack_test.go calls it; open returns a fresh, empty store.
func Attack(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"InjectionInValues", attackValues},
		{"InjectionInNames", attackNames},
		{"PrivateFields", attackPrivateFields},
		{"BigFilters", attackBigFilters},
		{"UpdateCannotMove", attackUpdateCannotMove},
		{"RelationshipKinds", attackRelationshipKinds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// hostile are values that would change a query if they were pasted into SQL,
// a LIKE pattern or a JSON path.
var hostile = []string{
	`' OR '1'='1`, `x' --`, `'; DROP TABLE users; --`, `") OR 1=1 --`, `\`, `%`, `_`, `%%`, `\%`, `\_`,
	`' UNION SELECT doc FROM users --`, `$.passwordHash`, `*`, `$1`, `?1`, `:name`, `@x`, `'::text`, `{}`, `[]`, `"`,
}

func seedUsers(t *testing.T, s store.Store) {
	t.Helper()
	must(t, s.CreateUser(ctx(t), &store.User{UserName: "alice", DisplayName: "50% off_now", PasswordHash: "$argon2id$v=19$secret",
		Emails: []store.MultiValue{{Value: "alice@example.org", Type: "work"}}}))
	must(t, s.CreateUser(ctx(t), &store.User{UserName: "bob", DisplayName: `back\slash`}))
	must(t, s.CreateThing(ctx(t), &store.Thing{SerialNumber: "SN-1", Attributes: map[string]any{"room": "hall", "a'b": "q", "x\"y": 1.0}}))
}

func countUsers(t *testing.T, s store.Store, f store.Expr) (int, error) {
	t.Helper()
	_, n, err := s.ListUsers(ctx(t), store.Query{Filter: f})
	return n, err
}

func attackValues(t *testing.T, s store.Store) {
	seedUsers(t, s)
	for _, v := range hostile {
		for _, op := range []store.Op{store.OpEq, store.OpCo, store.OpSw, store.OpEw} {
			for _, field := range []string{"userName", "name.givenName", "emails", "emails.type", "groups", "id"} {
				n, err := countUsers(t, s, store.Compare{Field: field, Op: op, Value: v})
				if err != nil {
					t.Errorf("%s %s %q: %v", field, op, v, err)
				} else if n != 0 {
					t.Errorf("%s %s %q matched %d users: not taken literally", field, op, v, n)
				}
			}
			_, n, err := s.ListThings(ctx(t), store.Query{Filter: store.Compare{Field: "attributes.room", Op: op, Value: v}})
			if err != nil || n != 0 {
				t.Errorf("attributes.room %s %q: %d things, %v", op, v, n, err)
			}
		}
	}
	// Wildcards and the escape character match themselves only.
	for _, tc := range []struct {
		op   store.Op
		v    string
		want int
	}{
		{store.OpCo, "%", 1}, {store.OpCo, "_", 1}, {store.OpSw, "50%", 1}, {store.OpSw, "5_%", 0},
		{store.OpCo, `\`, 1}, {store.OpEw, `\slash`, 1}, {store.OpCo, `\s`, 1}, {store.OpCo, `%_`, 0},
	} {
		if n, err := countUsers(t, s, store.Compare{Field: "displayName", Op: tc.op, Value: tc.v}); err != nil || n != tc.want {
			t.Errorf("displayName %s %q: %d users (%v), want %d", tc.op, tc.v, n, err, tc.want)
		}
	}
	// Text no column can hold is an invalid query on both backends, not a
	// driver error (PostgreSQL) or a LIKE cut short at the NUL (SQLite).
	for _, v := range []string{"\x00", "a\x00b", "%\x00", "\xff\xfe", "ok\xc3"} {
		for _, op := range []store.Op{store.OpEq, store.OpCo, store.OpGt} {
			_, err := countUsers(t, s, store.Compare{Field: "userName", Op: op, Value: v})
			if qe, ok := errors.AsType[*store.QueryError](err); !ok || qe.Field != "userName" || !errors.Is(err, store.ErrInvalidQuery) {
				t.Errorf("userName %s %q: %v, want a QueryError naming userName", op, v, err)
			}
			_, _, err = s.ListThings(ctx(t), store.Query{Filter: store.Compare{Field: "attributes.room", Op: op, Value: v}})
			if op != store.OpCo && !errors.Is(err, store.ErrInvalidQuery) {
				t.Errorf("attributes.room %s %q: %v, want ErrInvalidQuery", op, v, err)
			}
		}
	}
	if n, err := countUsers(t, s, nil); err != nil || n != 2 {
		t.Fatalf("users after the attack: %d %v", n, err)
	}
}

func attackNames(t *testing.T, s store.Store) {
	seedUsers(t, s)
	for _, f := range []string{
		`userName = 'x' OR 1=1 --`, `x.user_name_lower`, `user_name_lower`, `doc`, `x.doc`, `1`, `userName) OR (1=1`,
		`emails.value') OR ('1`, `emails.value'`, `name.formatted'); DROP TABLE users; --`, `groups.to_id`, `id; --`,
	} {
		if _, err := countUsers(t, s, store.Compare{Field: f, Op: store.OpEq, Value: "x"}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("field %q: %v, want ErrInvalidQuery", f, err)
		}
		if _, _, err := s.ListUsers(ctx(t), store.Query{SortBy: f, Limit: -1}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("sort by %q: %v, want ErrInvalidQuery", f, err)
		}
	}
	// Free attribute names are data: any name is bound, never pasted.
	for _, tc := range []struct {
		key  string
		v    any
		want int
	}{
		{"a'b", "q", 1}, {`x"y`, 1.0, 1}, {"room') OR 1=1 --", "hall", 0}, {"$.room", "hall", 0}, {"room", "hall", 1},
		{"room\" || '1", "hall", 0}, {"*", "hall", 0},
	} {
		_, n, err := s.ListThings(ctx(t), store.Query{Filter: store.Compare{Field: "attributes." + tc.key, Op: store.OpEq, Value: tc.v}})
		if err != nil || n != tc.want {
			t.Errorf("attributes.%s eq %v: %d things (%v), want %d", tc.key, tc.v, n, err, tc.want)
		}
		if _, _, err := s.ListThings(ctx(t), store.Query{SortBy: "attributes." + tc.key, Limit: -1}); err != nil {
			t.Errorf("sort by attributes.%s: %v", tc.key, err)
		}
		if _, _, err := s.ListThings(ctx(t), store.Query{Filter: store.Present{Field: "attributes." + tc.key}}); err != nil {
			t.Errorf("attributes.%s present: %v", tc.key, err)
		}
	}
	for _, k := range []string{"a\x00", "\xff"} {
		if _, _, err := s.ListThings(ctx(t), store.Query{Filter: store.Present{Field: "attributes." + k}}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("attributes.%q present: %v, want ErrInvalidQuery", k, err)
		}
		if _, _, err := s.ListThings(ctx(t), store.Query{SortBy: "attributes." + k, Limit: -1}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("sort by attributes.%q: %v, want ErrInvalidQuery", k, err)
		}
	}
}

// attackPrivateFields: the password hash lives in the user document; no
// field name reaches it.
func attackPrivateFields(t *testing.T, s store.Store) {
	seedUsers(t, s)
	for _, f := range []string{"passwordHash", "PasswordHash", "doc.passwordHash", "name.passwordHash", "emails.passwordHash",
		"name.passwordHash.x", "emailVerified.passwordHash", "attributes.passwordHash"} {
		_, err := countUsers(t, s, store.Compare{Field: f, Op: store.OpSw, Value: "$argon2"})
		if !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("users %s sw $argon2: %v, want ErrInvalidQuery", f, err)
		}
		if _, err := countUsers(t, s, store.Present{Field: f}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("users %s present: %v, want ErrInvalidQuery", f, err)
		}
		if _, err := countUsers(t, s, store.Any{Field: "emails", Where: store.Present{Field: f}}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("users emails[%s present]: %v, want ErrInvalidQuery", f, err)
		}
	}
	// The things' document (certificates, JWKS) is not reachable either.
	for _, f := range []string{"jwks", "certificates", "doc", "macAddresses.thing_id"} {
		if _, _, err := s.ListThings(ctx(t), store.Query{Filter: store.Present{Field: f}}); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("things %s present: %v, want ErrInvalidQuery", f, err)
		}
	}
}

// attackBigFilters: the largest trees a SCIM filter (4096 bytes) can produce
// compile and run on both databases.
func attackBigFilters(t *testing.T, s store.Store) {
	seedUsers(t, s)
	var or, and store.Expr
	for range 460 {
		p := store.Any{Field: "emails", Where: store.Present{Field: "value"}}
		if or == nil {
			or, and = p, p
			continue
		}
		or, and = store.Or{Left: or, Right: p}, store.And{Left: and, Right: p}
	}
	for name, f := range map[string]store.Expr{"or": or, "and": and} {
		if n, err := countUsers(t, s, f); err != nil || n != 1 {
			t.Errorf("%s of 460 terms: %d users, %v", name, n, err)
		}
	}
}

// attackUpdateCannotMove: an update function cannot change the record's id,
// revision or creation time, so it cannot overwrite another record.
func attackUpdateCannotMove(t *testing.T, s store.Store) {
	a := &store.User{UserName: "alice"}
	b := &store.User{UserName: "bob"}
	must(t, s.CreateUser(ctx(t), a))
	must(t, s.CreateUser(ctx(t), b))
	got, err := s.UpdateUser(ctx(t), a.ID, 0, func(u *store.User) error {
		u.ID, u.Revision, u.Created, u.DisplayName = b.ID, 99, b.Created.AddDate(-1, 0, 0), "moved"
		return nil
	})
	must(t, err)
	if got.ID != a.ID || got.Revision != 2 || !got.Created.Equal(a.Created) {
		t.Errorf("update moved the user: %+v", got.Meta)
	}
	if b2, err := s.GetUser(ctx(t), b.ID); err != nil || b2.DisplayName != "" || b2.Revision != 1 {
		t.Errorf("the other user changed: %+v %v", b2, err)
	}
	// Creating with the id of an existing record of any kind of the same
	// table is a conflict, never an overwrite.
	wantErr(t, s.CreateUser(ctx(t), &store.User{Meta: store.Meta{ID: b.ID}, UserName: "mallory"}), store.ErrConflict)
	if b2, _ := s.GetUser(ctx(t), b.ID); b2.UserName != "bob" {
		t.Errorf("create overwrote bob: %+v", b2)
	}
	// Stale revisions fail, also for deletes.
	_, err = s.UpdateUser(ctx(t), a.ID, 1, func(u *store.User) error { u.DisplayName = "late"; return nil })
	wantErr(t, err, store.ErrStale)
	wantErr(t, s.DeleteUser(ctx(t), a.ID, 1), store.ErrStale)
	// Case variants of a name are the same name.
	_, err = s.UpdateUser(ctx(t), b.ID, 0, func(u *store.User) error { u.UserName = "ALICE"; return nil })
	wantErr(t, err, store.ErrConflict)
	err = s.CreateUser(ctx(t), &store.User{UserName: "Bob"})
	wantErr(t, err, store.ErrConflict)
	// The conflict names the field and the value taken, for a page to say.
	if ce, ok := errors.AsType[*store.ConflictError](err); !ok || ce.Field != "userName" || !slices.Equal(ce.Args, []any{"Bob"}) {
		t.Errorf("a taken user name: %#v, want a ConflictError on userName", err)
	}
}

// attackRelationshipKinds: an end must exist as the kind the edge names.
func attackRelationshipKinds(t *testing.T, s store.Store) {
	u := &store.User{UserName: "alice"}
	must(t, s.CreateUser(ctx(t), u))
	th := &store.Thing{SerialNumber: "SN-1"}
	must(t, s.CreateThing(ctx(t), th))
	g := &store.Group{DisplayName: "g"}
	must(t, s.CreateGroup(ctx(t), g))
	for _, r := range []store.Relationship{
		{Kind: store.RelMember, From: store.Ref{Kind: store.KindThing, ID: u.ID}, To: store.Ref{Kind: store.KindGroup, ID: g.ID}},
		{Kind: store.RelMember, From: store.Ref{Kind: store.KindUser, ID: th.ID}, To: store.Ref{Kind: store.KindGroup, ID: g.ID}},
		{Kind: store.RelMember, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindGroup, ID: u.ID}},
		{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: g.ID}},
		{Kind: store.RelMember, From: store.Ref{Kind: "users", ID: u.ID}, To: store.Ref{Kind: store.KindGroup, ID: g.ID}},
		{Kind: store.RelMember, From: store.Ref{Kind: "user' OR '1'='1", ID: u.ID}, To: store.Ref{Kind: store.KindGroup, ID: g.ID}},
	} {
		if err := s.AddRelationship(ctx(t), r); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%+v: %v, want ErrNotFound", r, err)
		}
	}
	_, err := s.UpdateGroup(ctx(t), g.ID, 0, func(g *store.Group) error {
		g.Members = []store.Ref{{Kind: store.KindThing, ID: u.ID}}
		return nil
	})
	wantErr(t, err, store.ErrNotFound)
	if rels, err := s.ListRelationships(ctx(t), store.RelFilter{}); err != nil || len(rels) != 0 {
		t.Errorf("relationships stored: %v %v", rels, err)
	}
}
