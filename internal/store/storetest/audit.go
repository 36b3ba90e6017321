package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// testAuditQueries: every condition of AuditQuery, alone and together, both
// orders, keyset paging that records appended meanwhile never shift, prefixes
// that are literal (no LIKE wildcards) and exact at their end, and time
// bounds exact to the nanosecond given.
func testAuditQueries(t *testing.T, s store.Store) {
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	user := store.Ref{Kind: store.KindUser, ID: "u-1"}
	thing := store.Ref{Kind: store.KindThing, ID: "u-1"} // the same id, another kind
	recs := []store.AuditRecord{
		{Time: base, Actor: "admin:a1", Action: "user.create", Target: user},
		{Time: base.Add(time.Second), Actor: "admin:a1 via client:c1", Action: "uma.share.create", Target: thing},
		{Time: base.Add(2 * time.Second), Actor: "cli", Action: "uma.rpt.issue"},
		{Time: base.Add(3 * time.Second), Actor: "system", Action: "umaX.other", Target: user},
		{Time: base.Add(4 * time.Second), Actor: "user:u-1", Action: "user%_.odd", Target: user},
		{Time: base.Add(5*time.Second + 500*time.Nanosecond), Actor: "admin:a2", Action: "user.update", Target: user},
		{Time: base.Add(6 * time.Second), Actor: "admin:a1", Action: "userXupdate", Target: user},
		{Time: base.Add(7 * time.Second), Actor: "admin:a1", Action: "prefix.\U0010FFFF", Target: user},
		{Time: base.Add(8 * time.Second), Actor: "admin:a1", Action: "prefix.\U0010FFFFx", Target: user},
	}
	must(t, s.AppendAudit(ctx(t), recs...))
	all, err := s.ListAudit(ctx(t), store.AuditQuery{})
	must(t, err)
	if len(all) != len(recs) {
		t.Fatalf("%d records, want %d", len(all), len(recs))
	}
	seqs := func(rs []store.AuditRecord) []int64 {
		out := []int64{}
		for _, r := range rs {
			out = append(out, r.Seq)
		}
		return out
	}
	of := func(idx ...int) []int64 {
		out := []int64{}
		for _, i := range idx {
			out = append(out, all[i].Seq)
		}
		return out
	}
	for _, c := range []struct {
		name string
		q    store.AuditQuery
		want []int64
	}{
		{"actor exact", store.AuditQuery{Actor: store.TextMatch{Value: "admin:a1"}}, of(0, 6, 7, 8)},
		{"actor prefix", store.AuditQuery{Actor: store.TextMatch{Value: "admin:a1", Prefix: true}}, of(0, 1, 6, 7, 8)},
		{"action exact", store.AuditQuery{Action: store.TextMatch{Value: "user.update"}}, of(5)},
		{"action prefix", store.AuditQuery{Action: store.TextMatch{Value: "uma.", Prefix: true}}, of(1, 2)},
		{"action prefix without the dot", store.AuditQuery{Action: store.TextMatch{Value: "uma", Prefix: true}}, of(1, 2, 3)},
		{"LIKE wildcards are literal", store.AuditQuery{Action: store.TextMatch{Value: "user%_", Prefix: true}}, of(4)},
		{"underscore is not any character", store.AuditQuery{Action: store.TextMatch{Value: "user_", Prefix: true}}, of()},
		{"prefix ending in the last code point", store.AuditQuery{Action: store.TextMatch{Value: "prefix.\U0010FFFF", Prefix: true}}, of(7, 8)},
		{"empty prefix", store.AuditQuery{Action: store.TextMatch{Prefix: true}}, of(0, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"subject of one kind", store.AuditQuery{Target: &thing}, of(1)},
		{"subject of any kind", store.AuditQuery{Target: &store.Ref{ID: "u-1"}}, of(0, 1, 3, 4, 5, 6, 7, 8)},
		{"no subject", store.AuditQuery{Target: &store.Ref{}}, of(2)},
		{"since is inclusive", store.AuditQuery{Since: base.Add(2 * time.Second), Until: base.Add(4 * time.Second)}, of(2, 3)},
		{"since between microseconds", store.AuditQuery{Since: base.Add(5*time.Second + time.Nanosecond), Until: base.Add(6 * time.Second)}, of()},
		{"until between microseconds", store.AuditQuery{Since: base.Add(5 * time.Second), Until: base.Add(5*time.Second + time.Nanosecond)}, of(5)},
		{"since in another zone", store.AuditQuery{Since: base.Add(6 * time.Second).In(time.FixedZone("x", -5*3600))}, of(6, 7, 8)},
		{"all together", store.AuditQuery{Actor: store.TextMatch{Value: "admin:", Prefix: true}, Action: store.TextMatch{Value: "user", Prefix: true},
			Target: &user, Since: base, Until: base.Add(6 * time.Second)}, of(0, 5)},
		{"newest first", store.AuditQuery{Actor: store.TextMatch{Value: "admin:a1"}, Descending: true}, of(8, 7, 6, 0)},
		{"limit", store.AuditQuery{Limit: 2, Descending: true}, of(8, 7)},
		{"after", store.AuditQuery{AfterSeq: all[6].Seq}, of(7, 8)},
		{"before, newest first", store.AuditQuery{BeforeSeq: all[2].Seq, Descending: true}, of(1, 0)},
		{"between", store.AuditQuery{AfterSeq: all[1].Seq, BeforeSeq: all[4].Seq}, of(2, 3)},
	} {
		got, err := s.ListAudit(ctx(t), c.q)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.Equal(seqs(got), c.want) {
			t.Errorf("%s: seqs %v, want %v", c.name, seqs(got), c.want)
		}
	}

	// Keyset paging: records appended between pages never move a record
	// from one page to another, in either order.
	var pages []int64
	q := store.AuditQuery{Limit: 4, Descending: true}
	for {
		page, err := s.ListAudit(ctx(t), q)
		must(t, err)
		if len(page) == 0 {
			break
		}
		pages = append(pages, seqs(page)...)
		q.BeforeSeq = page[len(page)-1].Seq
		must(t, s.AppendAudit(ctx(t), store.AuditRecord{Actor: "cli", Action: "meanwhile"}))
	}
	if want := of(8, 7, 6, 5, 4, 3, 2, 1, 0); !slices.Equal(pages, want) {
		t.Fatalf("newest-first pages with appends between: %v, want %v", pages, want)
	}
	pages = nil
	q = store.AuditQuery{Limit: 4, Action: store.TextMatch{Value: "meanwhile"}}
	for {
		page, err := s.ListAudit(ctx(t), q)
		must(t, err)
		if len(page) == 0 {
			break
		}
		pages = append(pages, seqs(page)...)
		q.AfterSeq = page[len(page)-1].Seq
		if len(pages) < 6 {
			must(t, s.AppendAudit(ctx(t), store.AuditRecord{Actor: "cli", Action: "meanwhile"}))
		}
	}
	increasing := len(pages) == 6
	for i := 1; i < len(pages); i++ {
		increasing = increasing && pages[i] > pages[i-1]
	}
	if !increasing {
		t.Fatalf("oldest-first pages following appends: %v, want 6 records in increasing order", pages)
	}

	// Text no stored value can hold is refused, naming the field.
	for _, bad := range []store.AuditQuery{
		{Actor: store.TextMatch{Value: "a\x00b"}},
		{Action: store.TextMatch{Value: "\xff", Prefix: true}},
		{Target: &store.Ref{ID: "x\x00"}},
	} {
		if _, err := s.ListAudit(ctx(t), bad); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%+v: %v, want ErrInvalidQuery", bad, err)
		}
	}
	// Values are bound, never pasted into SQL.
	for _, v := range hostile {
		for _, prefix := range []bool{false, true} {
			got, err := s.ListAudit(ctx(t), store.AuditQuery{Actor: store.TextMatch{Value: v, Prefix: prefix}, Action: store.TextMatch{Value: v, Prefix: prefix}, Target: &store.Ref{Kind: store.Kind(v), ID: v}})
			if err != nil || len(got) != 0 {
				t.Errorf("hostile %q (prefix %v): %d records, %v", v, prefix, len(got), err)
			}
		}
	}
}
