package household

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
)

// What the authorization server is told: the household a thing is one of
// decides for its members; a dependant's new device is decided by their
// households as if it were theirs; nobody else is governed.
func TestActFor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.now = time.Date(2025, 3, 17, 10, 0, 0, 0, time.UTC)
	eve, err := f.ids.CreateUser(ctx, "test", &store.User{UserName: "eve"}, "")
	if err != nil {
		t.Fatal(err)
	}
	tablet, err := f.ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "Tablet", Type: store.ThingDevice, Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, user *store.User, thing *store.Thing, action policy.Action, governed, held, allowed bool, reason string) {
		t.Helper()
		a, err := f.svc.ActFor(ctx, user.ID, thing.ID, action)
		if err != nil || a.Governed != governed || a.Held != held || a.Decision.Allowed != allowed || !strings.HasPrefix(a.Decision.Reason, reason) {
			t.Errorf("%s: %+v, %v; want governed %v, held %v, allowed %v, %q", name, a, err, governed, held, allowed, reason)
		}
	}
	check("emma uses mum's speaker", f.emma, f.speaker, policy.Use, true, true, false, "no rule allows Emma to use Speaker")
	check("mum pairs her speaker", f.mum, f.speaker, policy.Pair, true, true, true, "allowed: guardians")
	check("eve uses the speaker", eve, f.speaker, policy.Use, false, false, false, "")
	check("eve pairs the speaker", eve, f.speaker, policy.Pair, false, false, false, "")
	check("emma pairs a new tablet", f.emma, tablet, policy.Pair, true, false, false, "no rule allows Emma to pair Tablet")
	check("emma's tablet's tokens", f.emma, tablet, policy.Use, false, false, false, "")
	check("mum pairs a new tablet", f.mum, tablet, policy.Pair, false, false, false, "")
	pairing := policy.Rule{ID: "pairing", Effect: policy.Allow, Who: policy.Who{Kind: policy.Dependants}, Things: policy.Things{Kind: policy.AllThings},
		Actions: []policy.Action{policy.Pair}, When: policy.When{Start: "09:00", End: "12:00"}}
	if _, err := f.svc.SetRules(ctx, f.mum, f.hh, []policy.Rule{pairing}); err != nil {
		t.Fatal(err)
	}
	check("emma pairs the tablet at 11:00", f.emma, tablet, policy.Pair, true, false, true, "allowed: dependants may pair every thing of the household from 09:00 to 12:00")
	f.now = f.now.Add(3 * time.Hour)
	check("emma pairs the tablet at 14:00", f.emma, tablet, policy.Pair, true, false, false, "outside the allowed times: dependants may pair")
	if got := auditedRefusals(t, f.st, tablet.ID); len(got) != 2 || got[1]["door"] != "oauth" || got[1]["rule"] != "pairing" || got[1]["household"] != f.hh {
		t.Errorf("audited: %v", got)
	}
}
