package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// testTimeLimit: a page read through an index by an equality alone (which
// the store runs without watching its context: it stops at the limit) still
// refuses a context that has ended, as a page that scans does, and finds
// what it finds with a live one.
func testTimeLimit(t *testing.T, s store.Store) {
	th := newThing("TIME-1")
	must(t, s.CreateThing(ctx(t), th))
	owner := &store.User{UserName: "time-owner"}
	must(t, s.CreateUser(ctx(t), owner))
	must(t, s.AddRelationship(ctx(t), store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: owner.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}))
	owners := []store.RelSpec{{Kind: store.RelOwner, End: store.EndTo}}
	seek := store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "TIME-1"}, SortBy: "id", Limit: 10}
	scan := store.Query{Filter: store.Substrings{Field: "serialNumber", Any: []string{"IME"}}, SortBy: "id", Limit: 10}
	ended, cancel := context.WithCancel(ctx(t))
	cancel()
	for name, q := range map[string]store.Query{"seek": seek, "scan": scan} {
		if _, _, err := s.ListThingsWith(ended, q, owners); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with an ended context: got %v, want context.Canceled", name, err)
		}
		got, rel, err := s.ListThingsWith(ctx(t), q, owners)
		must(t, err)
		if len(got) != 1 || got[0].ID != th.ID || len(rel) != 1 || rel[0].Other.ID != owner.ID || rel[0].Name != "time-owner" {
			t.Errorf("%s: got %v and %v, want %s owned by %s", name, got, rel, th.ID, owner.ID)
		}
	}
}
