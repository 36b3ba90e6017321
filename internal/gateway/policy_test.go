package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/household"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// family is a household on the gateway's own store, decided on the
// gateway's clock: mum (guardian) and emma (dependant), mum's speaker in
// the kids' room, emma allowed 07:00–20:00 on school days.
type family struct {
	svc               *household.Service
	mum, emma         *store.User
	speaker           *store.Thing
	hh, room          string
	schoolDay1959     time.Time
	emmaTok, mumTok   string
	thingTok, userTok string
}

func newFamily(t *testing.T) (*env, *family) {
	f := &family{}
	var svc *household.Service
	e := newEnv(t, `routes:
  - name: speaker
    match: {pathPrefix: /speaker}
    upstream: {url: "UPSTREAM"}
    filters: [oauth2, policy]
`, func(o *Options) {
		var ids *identity.Service
		var err error
		svc, ids = withHouseholds(t, o)
		ctx := context.Background()
		mk := func(name string) *store.User {
			u, err := ids.CreateUser(ctx, "test", &store.User{UserName: name, DisplayName: strings.ToUpper(name[:1]) + name[1:]}, "")
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		f.mum, f.emma = mk("mum"), mk("emma")
		if f.speaker, err = ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "Kids' speaker", Type: store.ThingDevice, Status: store.StatusActive}); err != nil {
			t.Fatal(err)
		}
		if err := ids.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: f.mum.ID},
			To: store.Ref{Kind: store.KindThing, ID: f.speaker.ID}}); err != nil {
			t.Fatal(err)
		}
		if f.hh, err = svc.Create(ctx, f.mum, "Smiths", "Europe/Berlin"); err != nil {
			t.Fatal(err)
		}
		inv, err := svc.Invite(ctx, f.mum, f.hh, "emma", "", policy.Dependant)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Accept(ctx, f.emma, inv.ID); err != nil {
			t.Fatal(err)
		}
		room, err := svc.AddRoom(ctx, f.mum, f.hh, "Kids' room")
		if err != nil {
			t.Fatal(err)
		}
		f.room = room.ID
		if err := svc.Place(ctx, f.mum, f.hh, f.speaker.ID, room.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.SetRules(ctx, f.mum, f.hh, []policy.Rule{f.window("20:00")}); err != nil {
			t.Fatal(err)
		}
	})
	f.svc = svc
	// The next school day, 19:59 in Berlin: near the real time, so that the
	// platform's keys are valid then.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	d := e.clk.Now().In(berlin).AddDate(0, 0, 1)
	for d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
		d = d.AddDate(0, 0, 1)
	}
	f.schoolDay1959 = time.Date(d.Year(), d.Month(), d.Day(), 19, 59, 0, 0, berlin)
	e.clk.mu.Lock()
	e.clk.t = f.schoolDay1959
	e.clk.mu.Unlock()
	viaSpeaker := func(user string) func(*tokens.Claims) {
		return func(c *tokens.Claims) { c.Subject, c.ThingID = user, f.speaker.ID }
	}
	f.emmaTok, f.mumTok = e.token("", viaSpeaker(f.emma.ID)), e.token("", viaSpeaker(f.mum.ID))
	f.thingTok = e.token("", viaSpeaker(f.speaker.ID)) // the speaker acting as itself
	f.userTok = e.token("", func(c *tokens.Claims) { c.Subject = f.emma.ID })
	return e, f
}

// withHouseholds gives the gateway of o a household service on its own
// store, deciding on its clock.
func withHouseholds(t testing.TB, o *Options) (*household.Service, *identity.Service) {
	ids := identity.New(o.Replay.(store.Store), o.Bus, password.Policy{})
	svc, err := household.New(household.Options{Store: o.Replay.(store.Store), Identities: ids, Engine: policy.NewEngine(o.Now, quiet), Bus: o.Bus, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	o.Decider = svc
	return svc, ids
}

func (f *family) window(end string) policy.Rule {
	return policy.Rule{ID: "emma", Effect: policy.Allow, Who: policy.Who{Kind: policy.OneMember, Member: f.emma.ID},
		Things: policy.Things{Kind: policy.InRoom, ID: f.room}, Actions: []policy.Action{policy.Use},
		When: policy.When{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "07:00", End: end}}
}

func TestPolicyFilter(t *testing.T) {
	e, f := newFamily(t)
	call := func(method, tok string) (*http.Response, string) {
		return e.do(nil, method, "/speaker/stream", "Authorization", "Bearer "+tok)
	}
	if resp, body := call("GET", f.emmaTok); resp.StatusCode != 200 || upstreamSaw(t, body).Path != "/speaker/stream" {
		t.Fatalf("at 19:59: %d %s", resp.StatusCode, body)
	}
	resp, body := call("POST", f.emmaTok)
	if p := problemOf(t, resp, body); resp.StatusCode != 403 || p.Error != "policy_denied" || p.Detail != "no rule allows Emma to configure Kids' speaker" {
		t.Fatalf("configure: %d %+v", resp.StatusCode, p)
	}
	e.clk.Add(2 * time.Minute) // 20:01
	resp, body = call("GET", f.emmaTok)
	if p := problemOf(t, resp, body); resp.StatusCode != 403 ||
		p.Detail != "outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00 on school days" {
		t.Fatalf("at 20:01: %d %+v", resp.StatusCode, p)
	}
	if resp, body := call("POST", f.mumTok); resp.StatusCode != 200 {
		t.Fatalf("the guardian at 20:01: %d %s", resp.StatusCode, body)
	}
	// Both refusals are audited with the rule that decided.
	recs, err := e.st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: f.speaker.ID}})
	if err != nil {
		t.Fatal(err)
	}
	var audited []string
	for _, r := range recs {
		if r.Action == "policy.deny" && r.Actor == "user:"+f.emma.ID && strings.Contains(string(r.Detail), `"door":"gateway"`) {
			audited = append(audited, string(r.Detail))
		}
	}
	if len(audited) != 2 || !strings.Contains(audited[0], `"rule":"default"`) || !strings.Contains(audited[1], `"rule":"emma"`) {
		t.Fatalf("audited refusals: %v", audited)
	}
	// A guardian's change reaches the next request.
	if _, err := f.svc.SetRules(context.Background(), f.mum, f.hh, []policy.Rule{f.window("21:00")}); err != nil {
		t.Fatal(err)
	}
	if resp, body := call("GET", f.emmaTok); resp.StatusCode != 200 {
		t.Fatalf("after the window was extended: %d %s", resp.StatusCode, body)
	}
	// Tokens that say no thing, or no user, do not pass.
	for name, tok := range map[string]string{"the thing as itself": f.thingTok, "a user's app": f.userTok} {
		resp, body := call("GET", tok)
		if p := problemOf(t, resp, body); resp.StatusCode != 403 || p.Error != "policy_denied" {
			t.Errorf("%s: %d %+v", name, resp.StatusCode, p)
		}
	}
}

func TestPolicyFilterConfig(t *testing.T) {
	e, _ := newFamily(t)
	up := `upstream: {url: "http://u"}`
	for _, tc := range []struct{ yaml, want string }{
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", public: true, filters: [policy]}]", "oauth2 filter before it"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [policy, oauth2]}]", "oauth2 filter before it"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, {policy: {actions: {GET: fly}}}]}]", "actions.GET"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, {policy: {actions: {get: use}}}]}]", "actions"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, {policy: {actions: {GET: mqtt.publish}}}]}]", "actions.GET"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, {policy: {scope: read}}]}]", "only the gateway action"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, {policy: {actions: {'*': gateway}, scope: 'a b'}}]}]", "scope"},
		{"routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, {policy: {colour: red}}]}]", "colour"},
	} {
		specs, err := parseRoutes([]byte(tc.yaml))
		if err == nil {
			_, err = e.g.compileRoutes(specs, []string{"api.yaml"})
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  err %v\n  want mention of %q", tc.yaml, err, tc.want)
		}
	}
	// A gateway without a decision engine refuses the filter.
	bare := newEnv(t, "routes: []\n")
	specs, _ := parseRoutes([]byte("routes: [{name: a, match: {pathPrefix: /}, " + up + ", filters: [oauth2, policy]}]"))
	if _, err := bare.g.compileRoutes(specs, []string{"api.yaml"}); err == nil || !strings.Contains(err.Error(), "no decision engine") {
		t.Errorf("without a decider: %v", err)
	}
}
