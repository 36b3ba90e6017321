package identity

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// TestSetThingPSKs: a first key is issued, the next one re-issued (an event
// relays carry), both audited with the key id and never the sealed key; a
// batch with a missing thing stores none of its keys.
func TestSetThingPSKs(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	th, err := s.CreateThing(ctx, "test", &store.Thing{SerialNumber: "T-1"})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetThingPSKs(ctx, "factory", []*store.ThingPSK{{ThingID: th.ID, KeyID: "k1", Sealed: []byte("SEALED-ONE")}}))
	must(s.SetThingPSKs(ctx, "cli", []*store.ThingPSK{{ThingID: th.ID, KeyID: "k2", Sealed: []byte("SEALED-TWO")}}))
	err = s.SetThingPSKs(ctx, "cli", []*store.ThingPSK{{ThingID: th.ID, KeyID: "k3", Sealed: []byte("x")}, {ThingID: "nope", KeyID: "k", Sealed: []byte("x")}})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a batch with a missing thing: %v", err)
	}
	if k, _ := st.GetThingPSK(ctx, th.ID); k.KeyID != "k2" {
		t.Fatalf("the failed batch left key %s", k.KeyID)
	}
	if types := strings.Join(rec.types(), ","); types != "thing.create,"+EventPSKIssue+","+EventPSKReissue {
		t.Errorf("events %s", types)
	}
	rec.mu.Lock()
	if !rec.evs[1].Local || rec.evs[2].Local || rec.evs[2].Details["keyId"] != "k2" {
		t.Errorf("a first key is local, a re-issue is not and names its key: %+v %+v", rec.evs[1], rec.evs[2])
	}
	rec.mu.Unlock()
	audit, _ := st.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: th.ID}})
	if len(audit) != 3 || audit[2].Action != EventPSKReissue || !strings.Contains(string(audit[2].Detail), "k2") {
		t.Fatalf("audit %+v", audit)
	}
	for _, a := range audit {
		if strings.Contains(string(a.Detail), "SEALED") {
			t.Fatalf("the audit holds a sealed key: %s", a.Detail)
		}
	}
}
