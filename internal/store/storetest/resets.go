package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// testPasswordResets: a reset is found until it expires or is used, used
// exactly once even by concurrent callers, and goes with its user.
func testPasswordResets(t *testing.T, s store.Store) {
	u := &store.User{UserName: "forgetful"}
	must(t, s.CreateUser(ctx(t), u))
	other := &store.User{UserName: "other"}
	must(t, s.CreateUser(ctx(t), other))
	at := base
	r := &store.PasswordReset{Hash: hashOf("reset-1"), UserID: u.ID, ExpiresAt: at.Add(30 * time.Minute)}
	must(t, s.CreatePasswordReset(ctx(t), r))
	if r.Created.IsZero() || r.Created.Location() != time.UTC {
		t.Fatalf("Created not set in UTC: %v", r.Created)
	}
	got, err := s.GetPasswordReset(ctx(t), r.Hash, at)
	must(t, err)
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("GetPasswordReset:\n got %+v\nwant %+v", got, r)
	}
	wantErr(t, s.CreatePasswordReset(ctx(t), &store.PasswordReset{Hash: r.Hash, UserID: other.ID, ExpiresAt: r.ExpiresAt}), store.ErrConflict)
	wantErr(t, s.CreatePasswordReset(ctx(t), &store.PasswordReset{Hash: hashOf("ghost"), UserID: "missing", ExpiresAt: r.ExpiresAt}), store.ErrNotFound)
	for name, bad := range map[string]*store.PasswordReset{
		"empty hash": {UserID: u.ID, ExpiresAt: r.ExpiresAt},
		"no expiry":  {Hash: hashOf("x"), UserID: u.ID},
	} {
		if err := s.CreatePasswordReset(ctx(t), bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}

	// Expired at `at` is not found, by either door, and stays unused.
	_, err = s.GetPasswordReset(ctx(t), r.Hash, r.ExpiresAt)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UsePasswordReset(ctx(t), r.Hash, r.ExpiresAt.Add(time.Second))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UsePasswordReset(ctx(t), hashOf("nope"), at)
	wantErr(t, err, store.ErrNotFound)

	// Single use, also when raced.
	errs := race(8, func(int) error { _, err := s.UsePasswordReset(ctx(t), r.Hash, at); return err })
	exactlyOnce(t, errs, store.ErrNotFound)
	_, err = s.GetPasswordReset(ctx(t), r.Hash, at)
	wantErr(t, err, store.ErrNotFound)

	// Deleting a user's resets leaves others' alone; deleting the user
	// deletes its resets.
	for _, h := range []string{"a", "b"} {
		must(t, s.CreatePasswordReset(ctx(t), &store.PasswordReset{Hash: hashOf(h), UserID: u.ID, ExpiresAt: r.ExpiresAt}))
	}
	must(t, s.CreatePasswordReset(ctx(t), &store.PasswordReset{Hash: hashOf("c"), UserID: other.ID, ExpiresAt: r.ExpiresAt}))
	must(t, s.DeleteUserPasswordResets(ctx(t), u.ID))
	for _, h := range []string{"a", "b"} {
		_, err = s.GetPasswordReset(ctx(t), hashOf(h), at)
		wantErr(t, err, store.ErrNotFound)
	}
	_, err = s.GetPasswordReset(ctx(t), hashOf("c"), at)
	must(t, err)
	must(t, s.DeleteUser(ctx(t), other.ID, 0))
	_, err = s.GetPasswordReset(ctx(t), hashOf("c"), at)
	wantErr(t, err, store.ErrNotFound)

	// Expired resets are purged.
	must(t, s.CreatePasswordReset(ctx(t), &store.PasswordReset{Hash: hashOf("old"), UserID: u.ID, ExpiresAt: time.Now().Add(-time.Minute)}))
	_, err = s.PurgeExpired(ctx(t), time.Now())
	must(t, err)
	_, err = s.GetPasswordReset(ctx(t), hashOf("old"), time.Now().Add(-time.Hour))
	wantErr(t, err, store.ErrNotFound)
}
