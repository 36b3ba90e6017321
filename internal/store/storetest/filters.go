package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

func cmp(field string, op store.Op, v any) store.Expr {
	return store.Compare{Field: field, Op: op, Value: v}
}

func subs(field, initial string, any []string, final string) store.Expr {
	return store.Substrings{Field: field, Initial: initial, Any: any, Final: final}
}

// fixture holds the identities the filter tests query, by short name.
type fixture struct {
	ids   map[string]string
	names map[string]string // id -> short name
	t0    time.Time         // between the creation of u1..u2 and u3..
}

func seed(t *testing.T, s store.Store) *fixture {
	f := &fixture{ids: map[string]string{}, names: map[string]string{}}
	users := []*store.User{
		{UserName: "alice", DisplayName: "Alice Smith", ExternalID: "e-1", Status: store.StatusActive, EmailVerified: true,
			Name:   store.Name{GivenName: "Alice", FamilyName: "Smith"},
			Emails: []store.MultiValue{{Value: "Alice@Work.example", Type: "work", Primary: true}, {Value: "alice@home.example", Type: "home"}},
			Locale: "en"},
		{UserName: "bob_100%", DisplayName: "Bob", Status: store.StatusDisabled, Timezone: "Europe/Paris",
			Emails:       []store.MultiValue{{Value: "bob@home.example", Type: "home", Primary: true}},
			PhoneNumbers: []store.MultiValue{{Value: "+33 1 00", Type: "work"}}},
	}
	users2 := []*store.User{
		{UserName: "Élodie", DisplayName: "ÉLODIE Martin", Status: store.StatusActive, Name: store.Name{FamilyName: "Martin"}},
	}
	for i, u := range users {
		must(t, s.CreateUser(ctx(t), u))
		f.add(fmt.Sprintf("u%d", i+1), u.ID)
	}
	time.Sleep(5 * time.Millisecond)
	f.t0 = time.Now()
	time.Sleep(5 * time.Millisecond)
	for _, u := range users2 {
		must(t, s.CreateUser(ctx(t), u))
		f.add("u3", u.ID)
	}
	things := []*store.Thing{
		{DisplayName: "Kitchen Speaker", Type: store.ThingDevice, Manufacturer: "Acme", Model: "S1", SerialNumber: "A-001",
			FirmwareVersion: "1.2.0", Location: "kitchen", Status: store.StatusActive, MACAddresses: []string{"aa:00:00:00:00:01", "aa:00:00:00:00:02"},
			Attributes: map[string]any{"color": "red", "volume": 7.0, "muted": false, "room_tag": "a_b"}},
		{DisplayName: "Thermostat", Type: store.ThingDevice, Manufacturer: "Acme", Model: "T1", SerialNumber: "A-002",
			FirmwareVersion: "2.0.0", Location: "hall", Status: store.StatusDisabled, MACAddresses: []string{"aa:00:00:00:00:03"},
			Attributes: map[string]any{"color": "white", "volume": 11.5, "muted": true, "room_tag": "axb"}},
		{DisplayName: "Billing API", Type: store.ThingService, Manufacturer: "Other", Status: store.StatusActive,
			Attributes: map[string]any{"volume": "loud"}},
	}
	for i, th := range things {
		must(t, s.CreateThing(ctx(t), th))
		f.add(fmt.Sprintf("t%d", i+1), th.ID)
	}
	groups := []*store.Group{
		{DisplayName: "Family", Members: []store.Ref{{Kind: store.KindUser, ID: f.ids["u1"]}, {Kind: store.KindThing, ID: f.ids["t1"]}}},
		{DisplayName: "Admins", ExternalID: "x-admins", Members: []store.Ref{{Kind: store.KindUser, ID: f.ids["u2"]}}},
	}
	for i, g := range groups {
		must(t, s.CreateGroup(ctx(t), g))
		f.add(fmt.Sprintf("g%d", i+1), g.ID)
	}
	must(t, s.AddRelationship(ctx(t), store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: f.ids["u1"]}, To: store.Ref{Kind: store.KindThing, ID: f.ids["t2"]}}))
	return f
}

func (f *fixture) add(name, id string) { f.ids[name] = id; f.names[id] = name }

func testFilters(t *testing.T, s store.Store) {
	f := seed(t, s)
	emails := func(w store.Expr) store.Expr { return store.Any{Field: "emails", Where: w} }
	tests := []struct {
		name   string
		kind   store.Kind
		filter store.Expr
		want   string // short names, space-separated, any order
	}{
		// Strings and case-insensitive strings.
		{"ci eq", store.KindUser, cmp("userName", store.OpEq, "ALICE"), "u1"},
		{"ci eq unicode", store.KindUser, cmp("userName", store.OpEq, "élodie"), "u3"},
		{"ci displayName unicode", store.KindUser, cmp("displayName", store.OpSw, "élodie"), "u3"},
		{"ne", store.KindUser, cmp("userName", store.OpNe, "alice"), "u2 u3"},
		{"co", store.KindUser, cmp("displayName", store.OpCo, "SMI"), "u1"},
		{"sw", store.KindUser, cmp("userName", store.OpSw, "B"), "u2"},
		{"ew", store.KindUser, cmp("displayName", store.OpEw, "bob"), "u2"},
		{"co percent is literal", store.KindUser, cmp("userName", store.OpCo, "%"), "u2"},
		{"co underscore is literal", store.KindUser, cmp("userName", store.OpCo, "_"), "u2"},
		{"ew percent", store.KindUser, cmp("userName", store.OpEw, "0%"), "u2"},
		{"attr underscore is literal", store.KindThing, cmp("attributes.room_tag", store.OpEq, "a_b"), "t1"},
		{"attr co underscore", store.KindThing, cmp("attributes.room_tag", store.OpCo, "_"), "t1"},
		{"case-sensitive eq", store.KindThing, cmp("location", store.OpEq, "Kitchen"), ""},
		{"case-sensitive co", store.KindThing, cmp("manufacturer", store.OpCo, "acme"), ""},
		{"case-sensitive sw", store.KindThing, cmp("manufacturer", store.OpSw, "Ac"), "t1 t2"},
		{"gt string", store.KindThing, cmp("firmwareVersion", store.OpGt, "1.2.0"), "t2"},
		{"ge string", store.KindThing, cmp("firmwareVersion", store.OpGe, "1.2.0"), "t1 t2"},
		{"lt string", store.KindThing, cmp("serialNumber", store.OpLt, "A-002"), "t1 t3"},
		{"le string", store.KindThing, cmp("serialNumber", store.OpLe, "A-002"), "t1 t2 t3"},
		{"id", store.KindThing, cmp("id", store.OpEq, "@t2"), "t2"},
		{"externalId", store.KindUser, cmp("externalId", store.OpEq, "e-1"), "u1"},
		{"status", store.KindThing, cmp("status", store.OpEq, "disabled"), "t2"},
		{"thingType", store.KindThing, cmp("thingType", store.OpEq, "service"), "t3"},
		{"model", store.KindThing, cmp("model", store.OpEq, "T1"), "t2"},
		{"name sub-attribute", store.KindUser, cmp("name.familyName", store.OpEq, "smith"), "u1"},
		{"json string ne includes absent", store.KindUser, cmp("locale", store.OpNe, "en"), "u2 u3"},
		{"timezone", store.KindUser, cmp("timezone", store.OpSw, "Europe/"), "u2"},
		// Substrings: one pattern, parts in order and not overlapping.
		{"substrings initial final", store.KindUser, subs("displayName", "al", nil, "ITH"), "u1"},
		{"substrings any in order", store.KindUser, subs("displayName", "", []string{"lic", "smi"}, ""), "u1"},
		{"substrings any out of order", store.KindUser, subs("displayName", "", []string{"smi", "lic"}, ""), ""},
		{"substrings do not overlap", store.KindThing, subs("serialNumber", "A-00", nil, "001"), ""},
		{"substrings percent is literal", store.KindUser, subs("userName", "bob", []string{"%"}, ""), "u2"},
		{"substrings underscore is literal", store.KindUser, subs("userName", "", nil, "_"), ""},
		{"substrings case-sensitive", store.KindThing, subs("manufacturer", "ac", nil, ""), ""},
		{"substrings multi-valued", store.KindUser, subs("emails", "alice@", nil, ".EXAMPLE"), "u1"},
		{"substrings attribute", store.KindThing, subs("attributes.room_tag", "a", nil, "b"), "t1 t2"},
		// A free attribute compared ignoring case (LDAP's description).
		{"attr eq case-sensitive", store.KindThing, cmp("attributes.color", store.OpEq, "RED"), ""},
		{"attr eq ignoring case", store.KindThing, store.Compare{Field: "attributes.color", Op: store.OpEq, Value: "RED", IgnoreCase: true}, "t1"},
		{"attr sw ignoring case", store.KindThing, store.Compare{Field: "attributes.color", Op: store.OpSw, Value: "WH", IgnoreCase: true}, "t2"},
		{"attr ignoring case is still a string", store.KindThing, store.Compare{Field: "attributes.volume", Op: store.OpEq, Value: "LOUD", IgnoreCase: true}, "t3"},
		{"substrings attribute case-sensitive", store.KindThing, subs("attributes.room_tag", "A", nil, ""), ""},
		{"substrings attribute ignoring case", store.KindThing, store.Substrings{Field: "attributes.room_tag", Initial: "A", Final: "B", IgnoreCase: true}, "t1 t2"},
		{"location eq ignoring case", store.KindThing, store.Compare{Field: "location", Op: store.OpEq, Value: "KITCHEN", IgnoreCase: true}, "t1"},
		{"manufacturer co ignoring case", store.KindThing, store.Compare{Field: "manufacturer", Op: store.OpCo, Value: "CM", IgnoreCase: true}, "t1 t2"},
		{"substrings location ignoring case", store.KindThing, store.Substrings{Field: "location", Initial: "HA", IgnoreCase: true}, "t2"},
		{"ignoring case on a CIString field", store.KindUser, store.Compare{Field: "userName", Op: store.OpEq, Value: "ALICE", IgnoreCase: true}, "u1"},
		{"substrings attribute ignoring case, literal underscore", store.KindThing, store.Substrings{Field: "attributes.room_tag", Any: []string{"_"}, IgnoreCase: true}, "t1"},
		// Bool.
		{"bool eq true", store.KindUser, cmp("emailVerified", store.OpEq, true), "u1"},
		{"bool eq false", store.KindUser, cmp("emailVerified", store.OpEq, false), "u2 u3"},
		{"bool ne", store.KindUser, cmp("emailVerified", store.OpNe, true), "u2 u3"},
		// Time.
		{"time gt", store.KindUser, cmp("meta.created", store.OpGt, "@t0"), "u3"},
		{"time lt", store.KindUser, cmp("meta.created", store.OpLt, "@t0"), "u1 u2"},
		{"time le lastModified", store.KindUser, cmp("meta.lastModified", store.OpLe, "@t0"), "u1 u2"},
		{"time ge", store.KindUser, cmp("meta.created", store.OpGe, "@t0"), "u3"},
		// Present.
		{"present json", store.KindUser, store.Present{Field: "locale"}, "u1"},
		{"present column", store.KindThing, store.Present{Field: "serialNumber"}, "t1 t2"},
		{"present multi", store.KindUser, store.Present{Field: "phoneNumbers"}, "u2"},
		{"present emails", store.KindUser, store.Present{Field: "emails"}, "u1 u2"},
		{"present attribute", store.KindThing, store.Present{Field: "attributes.muted"}, "t1 t2"},
		{"eq null", store.KindUser, cmp("locale", store.OpEq, nil), "u2 u3"},
		{"ne null", store.KindUser, cmp("locale", store.OpNe, nil), "u1"},
		// Logic.
		{"and", store.KindThing, store.And{Left: cmp("manufacturer", store.OpEq, "Acme"), Right: cmp("status", store.OpEq, "active")}, "t1"},
		{"or", store.KindThing, store.Or{Left: cmp("model", store.OpEq, "S1"), Right: cmp("thingType", store.OpEq, "service")}, "t1 t3"},
		{"not", store.KindThing, store.Not{X: cmp("manufacturer", store.OpEq, "Acme")}, "t3"},
		{"not present", store.KindUser, store.Not{X: store.Present{Field: "emails"}}, "u3"},
		{"pointer nodes", store.KindThing, &store.And{Left: &store.Compare{Field: "model", Op: store.OpEq, Value: "S1"}, Right: &store.Present{Field: "location"}}, "t1"},
		// Multi-valued.
		{"multi eq ci", store.KindUser, cmp("emails", store.OpEq, "alice@work.EXAMPLE"), "u1"},
		{"multi co", store.KindUser, cmp("emails", store.OpCo, "home.example"), "u1 u2"},
		{"multi dotted", store.KindUser, cmp("emails.type", store.OpEq, "work"), "u1"},
		{"any and", store.KindUser, emails(store.And{Left: cmp("type", store.OpEq, "work"), Right: cmp("value", store.OpCo, "WORK.example")}), "u1"},
		{"any and across elements is not a match", store.KindUser, emails(store.And{Left: cmp("type", store.OpEq, "home"), Right: cmp("value", store.OpCo, "WORK.example")}), ""},
		{"any or", store.KindUser, emails(store.Or{Left: cmp("type", store.OpEq, "work"), Right: cmp("value", store.OpSw, "bob")}), "u1 u2"},
		{"any primary", store.KindUser, emails(store.And{Left: cmp("primary", store.OpEq, true), Right: cmp("type", store.OpEq, "home")}), "u2"},
		{"any not", store.KindUser, emails(store.Not{X: cmp("type", store.OpEq, "home")}), "u1"},
		{"not any", store.KindUser, store.Not{X: emails(cmp("type", store.OpEq, "home"))}, "u3"},
		{"phone", store.KindUser, cmp("phoneNumbers", store.OpSw, "+33"), "u2"},
		{"mac eq", store.KindThing, cmp("macAddresses", store.OpEq, "AA:00:00:00:00:02"), "t1"},
		{"mac sw", store.KindThing, cmp("macAddresses", store.OpSw, "aa:00"), "t1 t2"},
		{"mac any", store.KindThing, store.Any{Field: "macAddresses", Where: cmp("value", store.OpEw, ":03")}, "t2"},
		{"not mac", store.KindThing, store.Not{X: cmp("macAddresses", store.OpEq, "aa:00:00:00:00:03")}, "t1 t3"},
		{"owners", store.KindThing, cmp("owners", store.OpEq, "@u1"), "t2"},
		{"thing groups", store.KindThing, cmp("groups", store.OpEq, "@g1"), "t1"},
		{"user groups", store.KindUser, cmp("groups", store.OpEq, "@g2"), "u2"},
		{"user groups present", store.KindUser, store.Present{Field: "groups"}, "u1 u2"},
		{"members", store.KindGroup, cmp("members", store.OpEq, "@t1"), "g1"},
		{"members type", store.KindGroup, store.Any{Field: "members", Where: store.And{Left: cmp("type", store.OpEq, "user"), Right: cmp("value", store.OpEq, "@u2")}}, "g2"},
		{"group displayName ci", store.KindGroup, cmp("displayName", store.OpEq, "family"), "g1"},
		{"group externalId", store.KindGroup, cmp("externalId", store.OpSw, "x-"), "g2"},
		// Free attributes: the value's type decides.
		{"attr string", store.KindThing, cmp("attributes.color", store.OpEq, "red"), "t1"},
		{"attr string ne", store.KindThing, cmp("attributes.color", store.OpNe, "red"), "t2 t3"},
		{"attr string sw", store.KindThing, cmp("attributes.color", store.OpSw, "wh"), "t2"},
		{"attr number gt", store.KindThing, cmp("attributes.volume", store.OpGt, 7.0), "t2"},
		{"attr number ge", store.KindThing, cmp("attributes.volume", store.OpGe, 7.0), "t1 t2"},
		{"attr number eq int", store.KindThing, cmp("attributes.volume", store.OpEq, 7), "t1"},
		{"attr string vs number", store.KindThing, cmp("attributes.volume", store.OpEq, "loud"), "t3"},
		{"attr bool", store.KindThing, cmp("attributes.muted", store.OpEq, true), "t2"},
		{"attr bool false", store.KindThing, cmp("attributes.muted", store.OpEq, false), "t1"},
		{"attr null", store.KindThing, cmp("attributes.muted", store.OpEq, nil), "t3"},
		{"attr missing", store.KindThing, cmp("attributes.nothing", store.OpEq, "x"), ""},
		{"attr injection-looking name", store.KindThing, cmp(`attributes.a' OR '1'='1`, store.OpEq, "x"), ""},
		{"field names ignore case", store.KindUser, cmp("USERNAME", store.OpEq, "alice"), "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.list(t, s, tt.kind, store.Query{Filter: f.resolve(tt.filter), Limit: -1})
			must(t, err)
			if want := sortedFields(tt.want); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// resolve replaces "@name" string values by fixture IDs and "@t0" by the time.
func (f *fixture) resolve(e store.Expr) store.Expr {
	switch e := e.(type) {
	case store.Compare:
		if s, ok := e.Value.(string); ok && strings.HasPrefix(s, "@") {
			if s == "@t0" {
				e.Value = f.t0
			} else {
				e.Value = f.ids[s[1:]]
			}
		}
		return e
	case store.And:
		return store.And{Left: f.resolve(e.Left), Right: f.resolve(e.Right)}
	case store.Or:
		return store.Or{Left: f.resolve(e.Left), Right: f.resolve(e.Right)}
	case store.Not:
		return store.Not{X: f.resolve(e.X)}
	case store.Any:
		return store.Any{Field: e.Field, Where: f.resolve(e.Where)}
	}
	return e
}

// list returns the sorted short names of the identities of kind matching q.
func (f *fixture) list(t *testing.T, s store.Store, kind store.Kind, q store.Query) ([]string, error) {
	names, _, err := f.listOrdered(t, s, kind, q)
	slices.Sort(names)
	return names, err
}

func (f *fixture) listOrdered(t *testing.T, s store.Store, kind store.Kind, q store.Query) ([]string, int, error) {
	var (
		ids   []string
		total int
		err   error
	)
	switch kind {
	case store.KindUser:
		var us []*store.User
		us, total, err = s.ListUsers(ctx(t), q)
		for _, u := range us {
			ids = append(ids, u.ID)
		}
	case store.KindThing:
		var ths []*store.Thing
		ths, total, err = s.ListThings(ctx(t), q)
		for _, th := range ths {
			ids = append(ids, th.ID)
		}
	case store.KindGroup:
		var gs []*store.Group
		gs, total, err = s.ListGroups(ctx(t), q)
		for _, g := range gs {
			ids = append(ids, g.ID)
		}
	}
	names := []string{}
	for _, id := range ids {
		names = append(names, f.names[id])
	}
	return names, total, err
}

func sortedFields(s string) []string {
	out := strings.Fields(s)
	slices.Sort(out)
	return append([]string{}, out...)
}

func testSortAndPaging(t *testing.T, s store.Store) {
	f := seed(t, s)
	notU3 := cmp("userName", store.OpNe, "élodie")
	tests := []struct {
		name      string
		kind      store.Kind
		q         store.Query
		want      string // in order
		wantTotal int
	}{
		{"default order is creation", store.KindUser, store.Query{Limit: -1}, "u1 u2 u3", 3},
		{"ci sort", store.KindUser, store.Query{SortBy: "displayName", Limit: -1}, "u1 u2 u3", 3},
		{"descending", store.KindUser, store.Query{SortBy: "userName", Descending: true, Limit: -1}, "u3 u2 u1", 3},
		{"sort by json field, absent first", store.KindUser, store.Query{Filter: notU3, SortBy: "locale", Limit: -1}, "u2 u1", 2},
		{"sort by bool", store.KindUser, store.Query{Filter: notU3, SortBy: "emailVerified", Limit: -1}, "u2 u1", 2},
		{"sort by time desc", store.KindThing, store.Query{SortBy: "meta.created", Descending: true, Limit: -1}, "t3 t2 t1", 3},
		{"sort by serial", store.KindThing, store.Query{SortBy: "serialNumber", Limit: -1}, "t3 t1 t2", 3},
		{"sort by attribute, absent last", store.KindThing, store.Query{SortBy: "attributes.color", Limit: -1}, "t1 t2 t3", 3},
		{"offset and limit", store.KindUser, store.Query{SortBy: "userName", Offset: 1, Limit: 1}, "u2", 3},
		{"offset past the end", store.KindUser, store.Query{SortBy: "userName", Offset: 10, Limit: 5}, "", 3},
		{"limit 0 is only the total", store.KindThing, store.Query{Filter: cmp("manufacturer", store.OpEq, "Acme"), Limit: 0}, "", 2},
		{"filter, sort and page", store.KindThing, store.Query{Filter: cmp("manufacturer", store.OpEq, "Acme"), SortBy: "model", Descending: true, Limit: 1}, "t2", 2},
		{"groups", store.KindGroup, store.Query{SortBy: "displayName", Limit: 10}, "g2 g1", 2},
		{"count bounded: more than 1", store.KindThing, store.Query{SortBy: "serialNumber", Limit: 1, CountLimit: 1}, "t3", 2},
		{"count bounded: exact below", store.KindThing, store.Query{Filter: cmp("manufacturer", store.OpEq, "Acme"), SortBy: "model", Limit: -1, CountLimit: 5}, "t1 t2", 2},
		{"count bounded: exact at", store.KindUser, store.Query{SortBy: "userName", Limit: -1, CountLimit: 3}, "u1 u2 u3", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, total, err := f.listOrdered(t, s, tt.kind, tt.q)
			must(t, err)
			if want := strings.Fields(tt.want); !slices.Equal(got, append([]string{}, want...)) || total != tt.wantTotal {
				t.Fatalf("got %v total %d, want %v total %d", got, total, want, tt.wantTotal)
			}
		})
	}
	// Ties are broken by id: pages never overlap or skip.
	for i := range 7 {
		must(t, s.CreateThing(ctx(t), &store.Thing{DisplayName: "same", Location: "attic", SerialNumber: fmt.Sprint("tie-", i)}))
	}
	var seen []string
	for off := 0; off < 7; off += 3 {
		page, total, err := s.ListThings(ctx(t), store.Query{Filter: cmp("location", store.OpEq, "attic"), SortBy: "displayName", Offset: off, Limit: 3})
		must(t, err)
		if total != 7 {
			t.Fatalf("total %d", total)
		}
		for _, th := range page {
			seen = append(seen, th.ID)
		}
	}
	slices.Sort(seen)
	if len(slices.Compact(seen)) != 7 {
		t.Fatalf("paging by a tied key returned %d distinct of 7", len(slices.Compact(seen)))
	}
}

func testInvalidQueries(t *testing.T, s store.Store) {
	tests := []struct {
		name  string
		kind  store.Kind
		q     store.Query
		field string // must be named in the error
	}{
		{"unknown field", store.KindUser, store.Query{Filter: cmp("shoeSize", store.OpEq, "9")}, "shoeSize"},
		{"thing field on users", store.KindUser, store.Query{Filter: cmp("serialNumber", store.OpEq, "x")}, "serialNumber"},
		{"attributes on users", store.KindUser, store.Query{Filter: cmp("attributes.color", store.OpEq, "x")}, "attributes.color"},
		{"empty attribute name", store.KindThing, store.Query{Filter: cmp("attributes.", store.OpEq, "x")}, "attributes."},
		{"string with a number", store.KindUser, store.Query{Filter: cmp("userName", store.OpEq, 3.0)}, "userName"},
		{"bool with a string", store.KindUser, store.Query{Filter: cmp("emailVerified", store.OpEq, "true")}, "emailVerified"},
		{"gt on bool", store.KindUser, store.Query{Filter: cmp("emailVerified", store.OpGt, true)}, "emailVerified"},
		{"le on bool attribute", store.KindThing, store.Query{Filter: cmp("attributes.muted", store.OpLe, true)}, "attributes.muted"},
		{"co on time", store.KindUser, store.Query{Filter: cmp("meta.created", store.OpCo, time.Now())}, "meta.created"},
		{"time with a string", store.KindUser, store.Query{Filter: cmp("meta.created", store.OpGt, "2020-01-01")}, "meta.created"},
		{"co on number attribute", store.KindThing, store.Query{Filter: cmp("attributes.volume", store.OpCo, 1.0)}, "attributes.volume"},
		{"unknown operator", store.KindUser, store.Query{Filter: cmp("userName", "like", "x")}, "userName"},
		{"unknown sub-field", store.KindUser, store.Query{Filter: store.Any{Field: "emails", Where: cmp("colour", store.OpEq, "x")}}, "colour"},
		{"any on single-valued", store.KindUser, store.Query{Filter: store.Any{Field: "userName", Where: cmp("value", store.OpEq, "x")}}, "userName"},
		{"nested any", store.KindUser, store.Query{Filter: store.Any{Field: "emails", Where: store.Any{Field: "emails", Where: cmp("value", store.OpEq, "x")}}}, "emails"},
		{"unknown field deep inside", store.KindThing, store.Query{Filter: store.And{Left: cmp("model", store.OpEq, "x"), Right: store.Not{X: store.Present{Field: "nope"}}}}, "nope"},
		{"sort by unknown", store.KindThing, store.Query{SortBy: "weight"}, "weight"},
		{"sort by multi-valued", store.KindUser, store.Query{SortBy: "emails"}, "emails"},
		{"eq null is fine but gt null is not", store.KindUser, store.Query{Filter: cmp("locale", store.OpGt, nil)}, "locale"},
	}
	f := &fixture{names: map[string]string{}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.listOrdered(t, s, tt.kind, tt.q)
			if !errors.Is(err, store.ErrInvalidQuery) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v, want ErrInvalidQuery naming %q", err, tt.field)
			}
		})
	}
}
