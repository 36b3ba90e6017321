package storetest

import (
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// testEmailFilters: an equality filter on emails (which the store answers
// through an index of addresses) follows every change of a user's
// addresses, ignores case, and still checks the element: a condition on
// another sub-field of the same address must hold too.
func testEmailFilters(t *testing.T, s store.Store) {
	u := &store.User{UserName: "mail-user", Emails: []store.MultiValue{{Value: "Ada@Example.org", Type: "work"}, {Value: "ada@home.example"}}}
	must(t, s.CreateUser(ctx(t), u))
	other := &store.User{UserName: "mail-other", Emails: []store.MultiValue{{Value: "grace@example.org", Type: "home"}}}
	must(t, s.CreateUser(ctx(t), other))
	find := func(f store.Expr) []string {
		t.Helper()
		us, _, err := s.ListUsers(ctx(t), store.Query{Filter: f, Limit: 10, SortBy: "userName"})
		must(t, err)
		var names []string
		for _, u := range us {
			names = append(names, u.UserName)
		}
		return names
	}
	eq := func(field, v string) store.Expr { return store.Compare{Field: field, Op: store.OpEq, Value: v} }
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) || (len(want) > 0 && got[0] != want[0]) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	check("emails eq, other case", find(eq("emails", "ADA@example.ORG")), "mail-user")
	check("emails.value eq, second address", find(eq("emails.value", "ada@home.example")), "mail-user")
	check("emails[value eq and type eq] of one element", find(store.Any{Field: "emails", Where: store.And{Left: eq("value", "ada@example.org"), Right: eq("type", "work")}}), "mail-user")
	check("emails[value eq and type eq] across elements", find(store.Any{Field: "emails", Where: store.And{Left: eq("value", "ada@home.example"), Right: eq("type", "work")}}))
	check("not emails eq", find(store.Not{X: eq("emails", "grace@example.org")}), "mail-user")

	_, err := s.UpdateUser(ctx(t), u.ID, 0, func(u *store.User) error {
		u.Emails = []store.MultiValue{{Value: "ada@new.example"}}
		return nil
	})
	must(t, err)
	check("old address after the change", find(eq("emails", "ada@example.org")))
	check("new address after the change", find(eq("emails", "ada@new.example")), "mail-user")
	must(t, s.DeleteUser(ctx(t), u.ID, 0))
	check("address of a deleted user", find(eq("emails", "ada@new.example")))
	check("the other user's address", find(eq("emails", "grace@example.org")), "mail-other")
}
