package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// UMA runs the conformance suite of store.UMA; open returns a fresh, empty
// store for each subtest.
func UMA(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Resources", testUMAResources},
		{"Tickets", testUMATickets},
		{"ConcurrentTickets", testUMAConcurrentTickets},
		{"SharesAndGrants", testUMAShares},
		{"Requests", testUMARequests},
		{"PCTs", testUMAPCTs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func testUMAResources(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := &store.UMAResource{OwnerID: "u1", ClientID: "rs-a", Name: "Playlist", Type: "playlist", IconURI: "https://x/i.png",
		Description: "d", Scopes: []string{"read", "play"}}
	if err := s.CreateUMAResource(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.Created.IsZero() {
		t.Fatalf("create set no ID or Created: %+v", r)
	}
	dup := *r
	if err := s.CreateUMAResource(ctx, &dup); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate id: want ErrConflict, got %v", err)
	}
	got, err := s.GetUMAResource(ctx, r.ID)
	if err != nil || got.Name != "Playlist" || !slices.Equal(got.Scopes, r.Scopes) || got.OwnerID != "u1" || got.ClientID != "rs-a" || got.IconURI != r.IconURI {
		t.Fatalf("get: %+v, %v", got, err)
	}
	got.Name, got.Scopes = "Mix", []string{"read"}
	if err := s.UpdateUMAResource(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got, _ = s.GetUMAResource(ctx, r.ID); got.Name != "Mix" || !slices.Equal(got.Scopes, []string{"read"}) {
		t.Fatalf("after update: %+v", got)
	}
	if err := s.CreateUMAResource(ctx, &store.UMAResource{OwnerID: "u2", ClientID: "rs-a", Name: "Other"}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.ListUMAResources(ctx, store.UMAResourceFilter{OwnerID: "u1"}); err != nil || len(l) != 1 || l[0].ID != r.ID {
		t.Fatalf("list by owner: %v, %v", l, err)
	}
	if l, err := s.ListUMAResources(ctx, store.UMAResourceFilter{ClientID: "rs-a"}); err != nil || len(l) != 2 {
		t.Fatalf("list by client: %v, %v", l, err)
	}
	sh := &store.UMAShare{ResourceID: r.ID, OwnerID: "u1", Grantee: store.Ref{Kind: store.KindUser, ID: "u3"}, Scopes: []string{"read"}}
	if err := s.CreateUMAShare(ctx, sh); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUMAResource(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUMAShare(ctx, sh.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("share of a deleted resource: want ErrNotFound, got %v", err)
	}
	if err := s.DeleteUMAResource(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete again: want ErrNotFound, got %v", err)
	}
	if err := s.UpdateUMAResource(ctx, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update deleted: want ErrNotFound, got %v", err)
	}
}

func testUMATickets(t *testing.T, s store.Store) {
	ctx := t.Context()
	perms := []store.UMAPermission{{ResourceID: "r1", Scopes: []string{"read"}}, {ResourceID: "r2", Scopes: []string{"a", "b"}}}
	tk := &store.UMATicket{Hash: hashOf("t1"), ClientID: "rs-a", Requester: "c1", Permissions: perms, ExpiresAt: base.Add(time.Minute)}
	if err := s.CreateUMATicket(ctx, tk); err != nil {
		t.Fatal(err)
	}
	got, err := s.UseUMATicket(ctx, hashOf("t1"), base)
	if err != nil || got.ClientID != "rs-a" || got.Requester != "c1" || len(got.Permissions) != 2 || !slices.Equal(got.Permissions[1].Scopes, []string{"a", "b"}) {
		t.Fatalf("first use: %+v, %v", got, err)
	}
	if got, err := s.UseUMATicket(ctx, hashOf("t1"), base.Add(time.Second)); !errors.Is(err, store.ErrUsed) || got == nil || got.ClientID != "rs-a" {
		t.Fatalf("second use: want the ticket with ErrUsed, got %v, %v", got, err)
	}
	if _, err := s.UseUMATicket(ctx, hashOf("nope"), base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown: want ErrNotFound, got %v", err)
	}
	// An expired ticket is returned (once) so that the caller can tell it expired.
	if err := s.CreateUMATicket(ctx, &store.UMATicket{Hash: hashOf("t2"), ClientID: "rs-a", Permissions: perms, ExpiresAt: base}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UseUMATicket(ctx, hashOf("t2"), base.Add(time.Hour)); err != nil || got.ExpiresAt.After(base) {
		t.Fatalf("expired: %+v, %v", got, err)
	}
	// A ticket a requesting party was bound to (claims interaction); reading
	// it does not use it.
	if err := s.CreateUMATicket(ctx, &store.UMATicket{Hash: hashOf("t3"), ClientID: "rs-a", Requester: "c1", Party: "u1", Permissions: perms, ExpiresAt: base.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, err := s.GetUMATicket(ctx, hashOf("t3")); err != nil || got.Party != "u1" || got.Requester != "c1" || !got.UsedAt.IsZero() || len(got.Permissions) != 2 {
			t.Fatalf("get: %+v, %v", got, err)
		}
	}
	if got, err := s.UseUMATicket(ctx, hashOf("t3"), base); err != nil || got.Party != "u1" {
		t.Fatalf("use a bound ticket: %+v, %v", got, err)
	}
	if got, err := s.GetUMATicket(ctx, hashOf("t3")); err != nil || !got.UsedAt.Equal(base) {
		t.Fatalf("get a used ticket: %+v, %v", got, err)
	}
	if _, err := s.GetUMATicket(ctx, hashOf("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get unknown: want ErrNotFound, got %v", err)
	}
}

func testUMAConcurrentTickets(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.CreateUMATicket(ctx, &store.UMATicket{Hash: hashOf("c"), ClientID: "rs", Permissions: []store.UMAPermission{{ResourceID: "r"}}, ExpiresAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, race(8, func(int) error { _, err := s.UseUMATicket(ctx, hashOf("c"), base); return err }), store.ErrUsed)
}

func testUMAShares(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := store.Ref{Kind: store.KindUser, ID: "u2"}
	g := store.Ref{Kind: store.KindGroup, ID: "g1"}
	a := &store.UMAShare{ResourceID: "r1", OwnerID: "u1", Grantee: u, Scopes: []string{"read"}, ExpiresAt: base.Add(time.Hour)}
	b := &store.UMAShare{ResourceID: "thing:t1", OwnerID: "u1", Grantee: g, Scopes: []string{"use"}}
	for _, x := range []*store.UMAShare{a, b} {
		if err := s.CreateUMAShare(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetUMAShare(ctx, a.ID)
	if err != nil || got.Grantee != u || !got.ExpiresAt.Equal(base.Add(time.Hour)) || !slices.Equal(got.Scopes, []string{"read"}) {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if l, _ := s.ListUMAShares(ctx, store.UMAShareFilter{Grantee: &g}); len(l) != 1 || l[0].ID != b.ID || !l[0].ExpiresAt.IsZero() {
		t.Fatalf("by grantee: %+v", l)
	}
	if l, _ := s.ListUMAShares(ctx, store.UMAShareFilter{OwnerID: "u1"}); len(l) != 2 {
		t.Fatalf("by owner: %+v", l)
	}
	if l, _ := s.ListUMAShares(ctx, store.UMAShareFilter{ResourceID: "r1"}); len(l) != 1 || l[0].Conditions != nil {
		t.Fatalf("by resource, without conditions: %+v", l)
	}
	// Conditions: set, read back as the same JSON value (PostgreSQL's
	// jsonb may respace it), cleared; an unknown share, or no JSON, refused.
	cond := json.RawMessage(`{"zone":"Europe/Berlin","days":["mon","fri"],"start":"07:00","end":"20:00","lastDate":"2025-03-23"}`)
	if err := s.SetUMAShareConditions(ctx, a.ID, cond); err != nil {
		t.Fatal(err)
	}
	var want, back any
	_ = json.Unmarshal(cond, &want)
	if got, err := s.GetUMAShare(ctx, a.ID); err != nil || json.Unmarshal(got.Conditions, &back) != nil || !reflect.DeepEqual(want, back) {
		t.Fatalf("conditions: %s, %v", got.Conditions, err)
	}
	withCond := &store.UMAShare{ResourceID: "r1", OwnerID: "u1", Grantee: g, Scopes: []string{"read"}, Conditions: cond}
	if err := s.CreateUMAShare(ctx, withCond); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetUMAShare(ctx, withCond.ID); err != nil || len(got.Conditions) == 0 {
		t.Fatalf("created with conditions: %+v, %v", got, err)
	}
	if err := s.SetUMAShareConditions(ctx, withCond.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetUMAShare(ctx, withCond.ID); got.Conditions != nil {
		t.Fatalf("cleared conditions read %s", got.Conditions)
	}
	if err := s.SetUMAShareConditions(ctx, "nope", cond); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("conditions of an unknown share: %v", err)
	}
	if err := s.SetUMAShareConditions(ctx, a.ID, json.RawMessage(`{"zone":`)); err == nil {
		t.Fatal("conditions that are not JSON were stored")
	}
	if err := s.DeleteUMAShare(ctx, withCond.ID); err != nil {
		t.Fatal(err)
	}
	for _, gid := range []string{"gA", "gB", "gA"} {
		if err := s.LinkUMAGrant(ctx, gid, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := s.ListUMAShareGrants(ctx, a.ID); err != nil || !slices.Equal(l, []string{"gA", "gB"}) {
		t.Fatalf("share grants: %v, %v", l, err)
	}
	if err := s.DeleteUMAShare(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUMAShare(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	if l, _ := s.ListUMAShareGrants(ctx, a.ID); len(l) != 2 {
		t.Fatalf("links must outlive the share (the caller revokes after the delete): %v", l)
	}
}

func testUMARequests(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := &store.UMARequest{ResourceID: "r1", OwnerID: "u1", RequesterID: "u2", ClientID: "c", Scopes: []string{"read"}}
	if err := s.CreateUMARequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Status != store.UMAPending {
		t.Fatalf("status %q, want pending", r.Status)
	}
	if l, _ := s.ListUMARequests(ctx, store.UMARequestFilter{OwnerID: "u1", Status: store.UMAPending}); len(l) != 1 {
		t.Fatalf("pending of owner: %v", l)
	}
	if err := s.DecideUMARequest(ctx, r.ID, store.UMADenied, base); err != nil {
		t.Fatal(err)
	}
	if err := s.DecideUMARequest(ctx, r.ID, store.UMAApproved, base); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("decide twice: want ErrConflict, got %v", err)
	}
	if err := s.DecideUMARequest(ctx, "nope", store.UMAApproved, base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("decide unknown: %v", err)
	}
	got, err := s.GetUMARequest(ctx, r.ID)
	if err != nil || got.Status != store.UMADenied || !got.Decided.Equal(base) || got.RequesterID != "u2" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if l, _ := s.ListUMARequests(ctx, store.UMARequestFilter{RequesterID: "u2"}); len(l) != 1 {
		t.Fatalf("of requester: %v", l)
	}
	if l, _ := s.ListUMARequests(ctx, store.UMARequestFilter{OwnerID: "u1", Status: store.UMAPending}); len(l) != 0 {
		t.Fatalf("pending after decision: %v", l)
	}
}

func testUMAPCTs(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.CreateUMAPCT(ctx, &store.UMAPCT{Hash: hashOf("p"), ClientID: "c", UserID: "u", ExpiresAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.GetUMAPCT(ctx, hashOf("p"), base); err != nil || p.UserID != "u" || p.ClientID != "c" {
		t.Fatalf("get: %+v, %v", p, err)
	}
	if _, err := s.GetUMAPCT(ctx, hashOf("p"), base.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired: %v", err)
	}
	if n, err := s.PurgeExpired(ctx, base.Add(2*time.Hour)); err != nil || n < 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
}
