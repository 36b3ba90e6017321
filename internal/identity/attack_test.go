package identity

// Attacks on validation: whichever door a change comes in by, these rules hold.

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// TestAttackUserNameLookalikes: compatibility forms are the same name, and
// invisible characters cannot make a look-alike of an existing one.
func TestAttackUserNameLookalikes(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, "test", &store.User{UserName: "admin"}, ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ＡＤＭＩＮ", "ａｄｍｉｎ", "\u3000admin", "ADMIN"} {
		if _, err := s.CreateUser(ctx, "test", &store.User{UserName: name}, ""); !errors.Is(err, store.ErrConflict) {
			t.Errorf("%q: %v, want a conflict with admin", name, err)
		}
	}
	for _, name := range []string{"admin\u200b", "ad\u00admin", "\u202eadmin", "admin\ufeff", "ad\u2028min", "admin\x7f"} {
		var ve *ValidationError
		if _, err := s.CreateUser(ctx, "test", &store.User{UserName: name}, ""); !errors.As(err, &ve) || ve.Field != "userName" {
			t.Errorf("%q: %v, want a userName validation error", name, err)
		}
	}
	if u, err := s.GetUserByName(ctx, "ＡＤＭＩＮ"); err != nil || u.UserName != "admin" {
		t.Errorf("lookup by the full-width form: %+v %v", u, err)
	}
	// Renaming into a look-alike is refused too.
	u, err := s.CreateUser(ctx, "test", &store.User{UserName: "bob"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateUser(ctx, "test", u.ID, 0, func(u *store.User) error { u.UserName = "ａｄｍｉｎ"; return nil }); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rename to a full-width admin: %v, want conflict", err)
	}
}

// TestAttackEmailVerifiedFollowsPrimary: EmailVerified vouches for the primary
// address; changing that address clears it unless the same change sets it.
func TestAttackEmailVerifiedFollowsPrimary(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, "test", &store.User{UserName: "alice", Emails: []store.MultiValue{{Value: "alice@example.org"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	set := func(fn func(*store.User)) *store.User {
		t.Helper()
		got, err := s.UpdateUser(ctx, "test", u.ID, 0, func(u *store.User) error { fn(u); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := set(func(u *store.User) { u.EmailVerified = true }); !got.EmailVerified {
		t.Fatal("verification not stored")
	}
	if got := set(func(u *store.User) { u.DisplayName = "Alice" }); !got.EmailVerified {
		t.Error("an unrelated change cleared the verification")
	}
	if got := set(func(u *store.User) { u.Emails = append(u.Emails, store.MultiValue{Value: "other@example.org"}) }); !got.EmailVerified {
		t.Error("adding a secondary address cleared the verification of the primary")
	}
	if got := set(func(u *store.User) { u.Emails[1].Primary = true }); got.EmailVerified {
		t.Error("a new primary address inherited the verification")
	}
	set(func(u *store.User) { u.EmailVerified = true })
	if got := set(func(u *store.User) { u.Emails = []store.MultiValue{{Value: "mallory@evil.example"}} }); got.EmailVerified {
		t.Error("replacing the address kept the verification")
	}
	if got := set(func(u *store.User) { u.Emails = []store.MultiValue{{Value: "new@example.org"}}; u.EmailVerified = true }); !got.EmailVerified {
		t.Error("a change that verifies the new address in the same step lost it")
	}
}

// TestAttackDeepAttributes: attribute values nesting deeper than the bound are
// refused before they reach the database, on every write path.
func TestAttackDeepAttributes(t *testing.T) {
	s, _, _ := newService(t)
	ctx := context.Background()
	deep := func(n int) any {
		var v any = 1.0
		for i := range n {
			if i%2 == 0 {
				v = []any{v}
			} else {
				v = map[string]any{"k": v}
			}
		}
		return v
	}
	if _, err := s.CreateThing(ctx, "test", &store.Thing{SerialNumber: "SN-OK", Attributes: map[string]any{"a": deep(maxAttrDepth)}}); err != nil {
		t.Errorf("%d levels: %v", maxAttrDepth, err)
	}
	var ve *ValidationError
	if _, err := s.CreateThing(ctx, "test", &store.Thing{SerialNumber: "SN-1", Attributes: map[string]any{"a": deep(maxAttrDepth + 1)}}); !errors.As(err, &ve) || ve.Field != "attributes" || !strings.Contains(ve.Reason(), `"a"`) {
		t.Errorf("%d levels: %v, want an attributes error naming a", maxAttrDepth+1, err)
	}
	errs, err := s.CreateThings(ctx, "test", []*store.Thing{{SerialNumber: "SN-2", Attributes: map[string]any{"a": deep(1200)}}})
	if err != nil || len(errs) != 1 || !errors.As(errs[0], &ve) {
		t.Errorf("batch: %v %v, want a validation error", errs, err)
	}
}
