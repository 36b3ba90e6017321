package storetest

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// testThingPSKs: a thing has at most one key, a re-issue replaces it (and
// says so), a key needs its thing and goes with it.
func testThingPSKs(t *testing.T, s store.Store) {
	a := &store.Thing{DisplayName: "thermostat a", SerialNumber: "PSK-1"}
	must(t, s.CreateThing(ctx(t), a))
	b := &store.Thing{DisplayName: "thermostat b", SerialNumber: "PSK-2"}
	must(t, s.CreateThing(ctx(t), b))

	_, err := s.GetThingPSK(ctx(t), a.ID)
	wantErr(t, err, store.ErrNotFound)
	state, err := s.GetThingPSKState(ctx(t), a.ID)
	must(t, err)
	if state.Key != nil || state.Status != a.Status || state.Revision != a.Revision {
		t.Fatalf("GetThingPSKState of a thing without a key: %+v, want status %q at revision %d, no key", state, a.Status, a.Revision)
	}
	k := &store.ThingPSK{ThingID: a.ID, KeyID: "0011223344556677", Sealed: []byte("sealed-1")}
	replaced, err := s.PutThingPSK(ctx(t), k)
	must(t, err)
	if replaced {
		t.Error("the first key replaced one")
	}
	if k.Created.IsZero() || k.Created.Location() != time.UTC {
		t.Fatalf("Created not set in UTC: %v", k.Created)
	}
	got, err := s.GetThingPSK(ctx(t), a.ID)
	must(t, err)
	if !reflect.DeepEqual(got, k) {
		t.Fatalf("GetThingPSK:\n got %+v\nwant %+v", got, k)
	}

	state, err = s.GetThingPSKState(ctx(t), a.ID)
	must(t, err)
	if !reflect.DeepEqual(state.Key, k) {
		t.Fatalf("GetThingPSKState's key:\n got %+v\nwant %+v", state.Key, k)
	}
	// The state follows the thing: disabled, its revision moves.
	a, err = s.UpdateThing(ctx(t), a.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil })
	must(t, err)
	state, err = s.GetThingPSKState(ctx(t), a.ID)
	must(t, err)
	if state.Status != store.StatusDisabled || state.Revision != a.Revision || state.Key == nil {
		t.Fatalf("GetThingPSKState of the disabled thing: %+v, want disabled at revision %d with its key", state, a.Revision)
	}
	_, err = s.GetThingPSKState(ctx(t), "missing")
	wantErr(t, err, store.ErrNotFound)

	// A re-issue replaces the key; the other thing's is its own.
	_, err = s.PutThingPSK(ctx(t), &store.ThingPSK{ThingID: b.ID, KeyID: "b0", Sealed: []byte("sealed-b")})
	must(t, err)
	k2 := &store.ThingPSK{ThingID: a.ID, KeyID: "8899aabbccddeeff", Sealed: []byte("sealed-2"), Created: base}
	replaced, err = s.PutThingPSK(ctx(t), k2)
	must(t, err)
	if !replaced {
		t.Error("a re-issue did not say it replaced a key")
	}
	got, err = s.GetThingPSK(ctx(t), a.ID)
	must(t, err)
	if got.KeyID != k2.KeyID || !bytes.Equal(got.Sealed, k2.Sealed) || !got.Created.Equal(base) {
		t.Fatalf("after re-issue: %+v", got)
	}
	got, err = s.GetThingPSK(ctx(t), b.ID)
	must(t, err)
	if got.KeyID != "b0" {
		t.Fatalf("b's key changed with a's: %+v", got)
	}
	state, err = s.GetThingPSKState(ctx(t), a.ID)
	must(t, err)
	if state.Key == nil || state.Key.KeyID != k2.KeyID || !bytes.Equal(state.Key.Sealed, k2.Sealed) {
		t.Fatalf("GetThingPSKState after re-issue: %+v", state.Key)
	}

	// Bad input names what is missing; a key of no thing is ErrNotFound.
	_, err = s.PutThingPSK(ctx(t), &store.ThingPSK{ThingID: "missing", KeyID: "k", Sealed: []byte("x")})
	wantErr(t, err, store.ErrNotFound)
	for name, bad := range map[string]*store.ThingPSK{
		"no key id":     {ThingID: a.ID, Sealed: []byte("x")},
		"no sealed key": {ThingID: a.ID, KeyID: "k"},
	} {
		if _, err := s.PutThingPSK(ctx(t), bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}

	// Concurrent re-issues leave exactly one of them.
	errs := race(8, func(i int) error {
		_, err := s.PutThingPSK(ctx(t), &store.ThingPSK{ThingID: a.ID, KeyID: string(rune('a' + i)), Sealed: []byte{byte(i)}})
		return err
	})
	for _, err := range errs {
		must(t, err)
	}
	got, err = s.GetThingPSK(ctx(t), a.ID)
	must(t, err)
	if len(got.KeyID) != 1 || got.Sealed[0] != byte(got.KeyID[0]-'a') {
		t.Fatalf("after concurrent re-issues, a torn row: %+v", got)
	}

	// In a transaction that is rolled back, nothing changes.
	rollback := errors.New("roll back")
	err = s.WithTx(ctx(t), func(tx store.Tx) error {
		if _, err := tx.PutThingPSK(ctx(t), &store.ThingPSK{ThingID: b.ID, KeyID: "rolled-back", Sealed: []byte("x")}); err != nil {
			return err
		}
		return rollback
	})
	wantErr(t, err, rollback)
	got, err = s.GetThingPSK(ctx(t), b.ID)
	must(t, err)
	if got.KeyID != "b0" {
		t.Fatalf("a rolled back re-issue stayed: %+v", got)
	}

	// Deleting the thing deletes its key.
	must(t, s.DeleteThing(ctx(t), a.ID, 0))
	_, err = s.GetThingPSK(ctx(t), a.ID)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetThingPSKState(ctx(t), a.ID)
	wantErr(t, err, store.ErrNotFound)
}
