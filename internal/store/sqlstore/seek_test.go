package sqlstore

import (
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// A page is read without interruption only when an index bounds it by its
// limit: an equality alone on a seek column, in id order from the start.
// Anything else (another condition, another order, an offset, no limit, a
// comparison no index holds) keeps the caller's time limit.
func TestSeeks(t *testing.T) {
	serial := store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "SN-1"}
	page := func(f store.Expr) store.Query {
		return store.Query{Filter: f, SortBy: "id", Limit: 1000, NoTotal: true}
	}
	for _, tc := range []struct {
		name string
		k    *kindSQL
		q    store.Query
		want bool
	}{
		{"serial number", thingKind, page(serial), true},
		{"serial number, pointer", thingKind, page(&serial), true},
		{"field name in another case", thingKind, page(store.Compare{Field: "SERIALNUMBER", Op: store.OpEq, Value: "SN-1"}), true},
		{"id", thingKind, page(store.Compare{Field: "id", Op: store.OpEq, Value: "x"}), true},
		{"user name ignoring case", userKind, page(store.Compare{Field: "userName", Op: store.OpEq, Value: "Alice", IgnoreCase: true}), true},
		{"group name", groupKind, page(store.Compare{Field: "displayName", Op: store.OpEq, Value: "family"}), true},
		{"serial number ignoring case", thingKind, page(store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "sn-1", IgnoreCase: true}), false},
		{"id ignoring case", thingKind, page(store.Compare{Field: "id", Op: store.OpEq, Value: "X", IgnoreCase: true}), false},
		{"prefix", thingKind, page(store.Compare{Field: "serialNumber", Op: store.OpSw, Value: "SN"}), false},
		{"not equal", thingKind, page(store.Compare{Field: "serialNumber", Op: store.OpNe, Value: "SN-1"}), false},
		{"null", thingKind, page(store.Compare{Field: "serialNumber", Op: store.OpEq}), false},
		{"no index", thingKind, page(store.Compare{Field: "displayName", Op: store.OpEq, Value: "Lamp"}), false},
		{"a thing's display name", thingKind, page(store.Compare{Field: "displayName", Op: store.OpEq, Value: "family"}), false},
		{"free attribute", thingKind, page(store.Compare{Field: "attributes.description", Op: store.OpEq, Value: "x"}), false},
		{"multi-valued", userKind, page(store.Compare{Field: "emails", Op: store.OpEq, Value: "a@example.org"}), false},
		{"and another condition", thingKind, page(store.And{Left: serial, Right: store.Substrings{Field: "displayName", Any: []string{"x"}}}), false},
		{"visibility", thingKind, page(store.And{Left: store.Compare{Field: "owners", Op: store.OpEq, Value: "u"}, Right: serial}), false},
		{"no filter", thingKind, page(nil), false},
		{"created order", thingKind, store.Query{Filter: serial, Limit: 1000}, false},
		{"offset", thingKind, store.Query{Filter: serial, SortBy: "id", Limit: 1000, Offset: 5}, false},
		{"no limit", thingKind, store.Query{Filter: serial, SortBy: "id", Limit: -1}, false},
	} {
		for _, f := range []Flavor{SQLite, Postgres} {
			if got := tc.k.seeks(f, tc.q); got != tc.want {
				t.Errorf("%s (%v): seeks = %v, want %v", tc.name, f, got, tc.want)
			}
		}
	}
}
