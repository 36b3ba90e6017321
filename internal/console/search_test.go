package console

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

// The things page's searches read SQLite's indexes (migration 0022 for
// model and status): no plan scans the things table or sorts every match.
// bench/search measures the same queries over 1,000,000 things.
func TestThingQueryUsesIndexes(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	u := &store.User{UserName: "olivia"}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	things := make([]*store.Thing, countBound+100)
	for i := range things {
		things[i] = &store.Thing{Type: store.ThingDevice, Model: fmt.Sprintf("M%d", i%5), SerialNumber: fmt.Sprintf("SN-%05d", i),
			MACAddresses: []string{fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)}, Status: store.StatusActive}
		if i < 100 {
			things[i].Status = store.StatusDisabled
		}
	}
	if _, err := st.CreateThings(ctx, things); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRelationship(ctx, store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID},
		To: store.Ref{Kind: store.KindThing, ID: things[7].ID}}); err != nil {
		t.Fatal(err)
	}
	ex, ok := st.(interface {
		ExplainThings(ctx context.Context, q store.Query) (count, page string, err error)
	})
	if !ok {
		t.Fatal("the SQLite store does not explain its plans")
	}
	for name, tc := range map[string]struct {
		q     store.Query
		index string
	}{
		"serial":           {ThingQuery("SN-00007", "", "", "", "", 1), "things_serial_number"},
		"mac":              {ThingQuery("", "02:00:00:00:00:07", "", "", "", 1), "PRIMARY KEY (mac=?)"},
		"model":            {ThingQuery("", "", "M2", "", "", 3), "things_model_"},
		"owner":            {ThingQuery("", "", "", u.ID, "", 1), "relationships_from"},
		"status":           {ThingQuery("", "", "", "", "active", 2), "things_status_serial"},
		"model and status": {ThingQuery("", "", "M2", "", "disabled", 1), "things_model_status_serial"},
	} {
		count, page, err := ex.ExplainThings(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for stmt, plan := range map[string]string{"count": count, "page": page} {
			if !strings.Contains(plan, tc.index) || strings.Contains(plan, "SCAN x") {
				t.Errorf("%s: the %s's plan does not read %s:\n%s", name, stmt, tc.index, plan)
			}
		}
		// A page of a large result reads it in order: no sort of every match.
		if (name == "model" || name == "status" || name == "model and status") && strings.Contains(page, "TEMP B-TREE") {
			t.Errorf("%s: the page sorts every match:\n%s", name, page)
		}
	}

	// Every thing matches an empty search: the first page counts
	// countBound+1 ("more than"), the last one exactly.
	for page, want := range map[int]int{1: countBound + 1, 201: countBound + 100} {
		ts, total, err := st.ListThings(ctx, ThingQuery("", "", "", "", "", page))
		if err != nil || total != want || len(ts) == 0 {
			t.Errorf("page %d: total %d, want %d (%d rows, %v)", page, total, want, len(ts), err)
		}
	}
}
