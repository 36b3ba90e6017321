package household

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
)

// auditedRefusals reads the "policy.deny" records about thing.
func auditedRefusals(t *testing.T, st store.Store, thing string) []map[string]any {
	t.Helper()
	recs, err := st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: thing}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range recs {
		if r.Action != "policy.deny" {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(r.Detail, &d); err != nil {
			t.Fatal(err)
		}
		d["actor"] = r.Actor
		out = append(out, d)
	}
	return out
}

// Every refusal of Decide is audited with the rule that decided, whichever
// door asks; an allowed decision and a guardian's preview are not; a
// refusal repeated at once is counted into one more record, not written
// each time.
func TestRefusalsAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.svc.deny.window = 50 * time.Millisecond
	f.now = time.Date(2025, 3, 17, 19, 30, 0, 0, time.UTC) // a Monday, 20:30 in Berlin
	r := f.rule("07:00", "20:00")
	r.ID = "kids-evening"
	if _, err := f.svc.SetRules(ctx, f.mum, f.hh, []policy.Rule{r}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Preview(ctx, f.mum, f.hh, policy.Request{UserID: f.emma.ID, ThingID: f.speaker.ID, Action: policy.Use}); err != nil {
		t.Fatal(err)
	}
	if got := auditedRefusals(t, f.st, f.speaker.ID); len(got) != 0 {
		t.Fatalf("a preview was audited: %v", got)
	}
	req := policy.Request{UserID: f.emma.ID, ThingID: f.speaker.ID, Action: policy.Use, Door: "gateway"}
	for range 3 {
		if d, err := f.svc.Decide(ctx, req); err != nil || d.Allowed {
			t.Fatalf("at 20:30: %+v, %v", d, err)
		}
	}
	got := auditedRefusals(t, f.st, f.speaker.ID)
	if len(got) != 1 {
		t.Fatalf("three refusals at once: %v", got)
	}
	want := map[string]any{"actor": "user:" + f.emma.ID, "door": "gateway", "action": "use", "rule": "kids-evening", "household": f.hh,
		"reason": "outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00", "localTime": "2025-03-17T20:30:00+01:00"}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("record %s = %v, want %v", k, got[0][k], v)
		}
	}
	// The two repeats follow in one record when the window ends.
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2; got = auditedRefusals(t, f.st, f.speaker.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("the repeats were never written: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got[1]["repeats"] != 2.0 || got[1]["rule"] != "kids-evening" {
		t.Fatalf("repeats: %v", got[1])
	}
	// Another door, or another rule, is another record; an allowed
	// decision none.
	if _, err := f.svc.Decide(ctx, policy.Request{UserID: f.emma.ID, ThingID: f.speaker.ID, Action: policy.Configure, Door: "oauth"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Decide(ctx, policy.Request{UserID: f.mum.ID, ThingID: f.speaker.ID, Action: policy.Use, Door: "gateway"}); err != nil {
		t.Fatal(err)
	}
	got = auditedRefusals(t, f.st, f.speaker.ID)
	if len(got) != 3 || got[2]["door"] != "oauth" || got[2]["rule"] != "default" || got[2]["reason"] != "no rule allows Emma to configure Speaker" {
		t.Fatalf("after configure and the guardian's use: %v", got)
	}
}

// A UMA share's conditions refusing are audited like every door's
// refusals, on the resource, with the share as the rule; a share within
// its times is not.
func TestShareRefusalsAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	loc, err := policy.LoadZone("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.CompileConditions(policy.When{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "07:00", End: "20:00"}, loc, "conditions")
	if err != nil {
		t.Fatal(err)
	}
	f.now = time.Date(2025, 3, 17, 18, 59, 0, 0, time.UTC) // Monday 19:59 in Berlin
	if d := f.svc.DecideShare(ctx, c, f.emma.ID, "playlist-1", "share-1", []string{"play"}); !d.Allowed || !d.Until.Equal(time.Date(2025, 3, 17, 19, 0, 0, 0, time.UTC)) {
		t.Fatalf("at 19:59: %+v", d)
	}
	f.now = f.now.Add(2 * time.Minute)
	d := f.svc.DecideShare(ctx, c, f.emma.ID, "playlist-1", "share-1", []string{"play"})
	if d.Allowed || d.Rule != "share:share-1" {
		t.Fatalf("at 20:01: %+v", d)
	}
	recs, err := f.st.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: "uma_resource", ID: "playlist-1"}, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Action != "policy.deny" || recs[0].Actor != "user:"+f.emma.ID {
		t.Fatalf("records: %+v", recs)
	}
	var detail map[string]any
	_ = json.Unmarshal(recs[0].Detail, &detail)
	if detail["door"] != "uma" || detail["rule"] != "share:share-1" || detail["scope"] != "play" || detail["localTime"] != "2025-03-17T20:01:00+01:00" ||
		detail["reason"] != "outside the share's times: from 07:00 to 20:00 on school days (Europe/Berlin)" {
		t.Fatalf("detail: %v", detail)
	}
}
