package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authzen"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/household"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/store"
)

// homeWorld is a running platform with a family (mum, emma, gran), a
// neighbour (eve) and a speaker for each household.
type homeWorld struct {
	r                     *running
	mum, emma, gran, eve  *store.User
	speaker, eveCam       *store.Thing
	mumC, emmaC, evec, gC *http.Client
	// pep may call the AuthZEN API (scope authzen:evaluate); other may not.
	pep, other clientCreds
	// tablet is a thing nobody owns yet; speakerApp and tabletApp are the
	// public clients the speaker and the tablet pair with.
	tablet                *store.Thing
	speakerApp, tabletApp string
	// clock is the households' clock; zero: the real time.
	clock decisionClock
}

// decisionClock is a clock the test sets; its zero value is time.Now.
type decisionClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *decisionClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *decisionClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newHomeWorld(t *testing.T) *homeWorld {
	w := &homeWorld{}
	ctx := context.Background()
	w.r = serveWith(t, func(p *Platform) {
		var err error
		mk := func(name string, email string) *store.User {
			u := &store.User{UserName: name, DisplayName: strings.ToUpper(name[:1]) + name[1:]}
			if email != "" {
				u.Emails, u.EmailVerified = []store.MultiValue{{Value: email, Primary: true}}, true
			}
			if u, err = p.Identity.CreateUser(ctx, "test", u, umaPW); err != nil {
				t.Fatal(err)
			}
			return u
		}
		w.mum, w.emma, w.gran, w.eve = mk("mum", ""), mk("emma", ""), mk("gran", "gran@example.org"), mk("eve", "")
		thing := func(name string, owner *store.User) *store.Thing {
			th, err := p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: name, Type: store.ThingDevice, Model: "Echo 3", Status: store.StatusActive})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Identity.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner,
				From: store.Ref{Kind: store.KindUser, ID: owner.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
				t.Fatal(err)
			}
			return th
		}
		w.speaker, w.eveCam = thing("Kids' speaker", w.mum), thing("Eve's camera", w.eve)
		if w.tablet, err = p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: "Tablet", Type: store.ThingDevice, Model: "Tab 9", Status: store.StatusActive}); err != nil {
			t.Fatal(err)
		}
		p.decisionClock = w.clock.now
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		for _, c := range []struct {
			to    *clientCreds
			scope string
		}{{&w.pep, authzen.Scope}, {&w.other, "profile"}} {
			cl, secret, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: c.scope, GrantTypes: []string{"client_credentials"}, Scopes: []string{c.scope}})
			if err != nil {
				t.Fatal(err)
			}
			*c.to = clientCreds{cl.ID, secret}
		}
		for _, c := range []struct {
			to    *string
			thing *store.Thing
		}{{&w.speakerApp, w.speaker}, {&w.tabletApp, w.tablet}} {
			cl, _, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: c.thing.DisplayName + " app", Type: store.ClientPublic, ThingID: c.thing.ID,
				GrantTypes: []string{oauth.GrantDeviceCode, oauth.GrantRefreshToken}, Scopes: []string{"speaker:play", "offline_access"}})
			if err != nil {
				t.Fatal(err)
			}
			*c.to = cl.ID
		}
	})
	u := &umaWorld{r: w.r}
	w.mumC, w.emmaC, w.gC, w.evec = u.signin(t, "mum"), u.signin(t, "emma"), u.signin(t, "gran"), u.signin(t, "eve")
	return w
}

// do sends a JSON request as c and decodes the JSON answer.
func (w *homeWorld) do(t *testing.T, c *http.Client, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, w.r.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, out
}

// must is do expecting status.
func (w *homeWorld) must(t *testing.T, c *http.Client, status int, method, path, body string) map[string]any {
	t.Helper()
	code, out := w.do(t, c, method, path, body)
	if code != status {
		t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, status)
	}
	return out
}

// refused is do expecting a problem with status naming field.
func (w *homeWorld) refused(t *testing.T, c *http.Client, status int, field, method, path, body string) {
	t.Helper()
	code, out := w.do(t, c, method, path, body)
	if code != status || (field != "" && out["field"] != field) {
		t.Fatalf("%s %s: %d %v, want %d naming %q", method, path, code, out, status, field)
	}
}

// family sets the household up through the API as its guardian would: the
// household, emma as dependant, gran as guest (by e-mail), the kids' room,
// the speaker in it.
func (w *homeWorld) family(t *testing.T) (hh, room string) {
	out := w.must(t, w.mumC, 201, "POST", "/api/v1/households", `{"name":"Smiths","timeZone":"Europe/Berlin"}`)
	hh = out["id"].(string)
	if out["role"] != "guardian" {
		t.Fatalf("the creator is %v", out["role"])
	}
	w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/invitations", `{"userName":"emma","role":"dependant"}`)
	w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/invitations", `{"email":"GRAN@example.org","role":"guest"}`)
	for _, c := range []*http.Client{w.emmaC, w.gC} {
		invs := w.must(t, c, 200, "GET", "/api/v1/households/invitations", "")["invitations"].([]any)
		if len(invs) != 1 {
			t.Fatalf("invitations: %v", invs)
		}
		inv := invs[0].(map[string]any)
		if inv["household"] != "Smiths" || inv["invitedBy"] != "Mum" {
			t.Fatalf("invitation: %v", inv)
		}
		w.must(t, c, 204, "POST", "/api/v1/households/invitations/"+inv["id"].(string)+"/accept", "")
	}
	room = w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/rooms", `{"name":"Kids' room"}`)["id"].(string)
	w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/things/"+w.speaker.ID, `{"roomId":"`+room+`"}`)
	return hh, room
}

func TestHouseholdAPI(t *testing.T) {
	w := newHomeWorld(t)
	var mu sync.Mutex
	var seen []events.Event
	w.r.p.Bus.Subscribe(func(e events.Event) {
		if e.Type == household.EventChanged {
			mu.Lock()
			seen = append(seen, e)
			mu.Unlock()
		}
	})
	hh, room := w.family(t)
	rules := `{"rules":[{"effect":"allow","who":{"kind":"member","member":"` + w.emma.ID + `"},"things":{"kind":"room","id":"` + room +
		`"},"actions":["use"],"when":{"days":["mon","tue","wed","thu","fri"],"start":"07:00","end":"20:00"}}]}`
	out := w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/rules", rules)
	got := out["rules"].([]any)[0].(map[string]any)
	if got["text"] != "Emma may use the things in Kids' room from 07:00 to 20:00 on school days" || got["id"] == "" {
		t.Fatalf("rule: %v", got)
	}
	if n := len(out["members"].([]any)); n != 3 || len(out["things"].([]any)) != 1 {
		t.Fatalf("household: %v", out)
	}
	// One rule added, and deleted, on its own.
	w.refused(t, w.mumC, 400, "when.start", "POST", "/api/v1/households/"+hh+"/rules", `{"effect":"deny","who":{"kind":"guests"},"things":{"kind":"all"},"actions":["configure"],"when":{"start":"8","end":"9"}}`)
	added := w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/rules", `{"id":"no-config","effect":"deny","who":{"kind":"guests"},"things":{"kind":"all"},"actions":["configure"]}`)
	if rs := added["rules"].([]any); len(rs) != 2 || rs[1].(map[string]any)["text"] != "guests may not configure every thing of the household" {
		t.Fatalf("after adding a rule: %v", rs)
	}
	w.refused(t, w.mumC, 400, "id", "POST", "/api/v1/households/"+hh+"/rules", `{"id":"no-config","effect":"deny","who":{"kind":"guests"},"things":{"kind":"all"},"actions":["use"]}`)
	w.must(t, w.mumC, 204, "DELETE", "/api/v1/households/"+hh+"/rules/no-config", "")
	w.refused(t, w.mumC, 404, "ruleId", "DELETE", "/api/v1/households/"+hh+"/rules/no-config", "")
	w.refused(t, w.emmaC, 403, "", "POST", "/api/v1/households/"+hh+"/rules", `{"effect":"allow","who":{"kind":"dependants"},"things":{"kind":"all"},"actions":["configure"]}`)
	// Every member reads the household; the guardian previews decisions.
	if out := w.must(t, w.emmaC, 200, "GET", "/api/v1/households/"+hh, ""); out["role"] != "dependant" || out["invitations"] != nil {
		t.Fatalf("as emma: %v", out)
	}
	d := w.must(t, w.mumC, 200, "POST", "/api/v1/households/"+hh+"/decisions", `{"userId":"`+w.emma.ID+`","thingId":"`+w.speaker.ID+`","action":"use"}`)
	if d["rule"] != got["id"] || !strings.Contains(d["reason"].(string), "Emma may use the things in Kids' room") {
		t.Fatalf("preview: %v", d)
	}
	if d := w.must(t, w.mumC, 200, "POST", "/api/v1/households/"+hh+"/decisions", `{"userId":"`+w.gran.ID+`","thingId":"`+w.speaker.ID+`","action":"configure"}`); d["allowed"] != false ||
		!strings.Contains(d["reason"].(string), "no rule allows Gran to configure Kids' speaker") {
		t.Fatalf("preview for gran: %v", d)
	}
	w.refused(t, w.mumC, 400, "action", "POST", "/api/v1/households/"+hh+"/decisions", `{"userId":"`+w.gran.ID+`","thingId":"`+w.speaker.ID+`","action":"fly"}`)
	// SCIM's group is the household, with its members.
	g, err := w.r.p.Store.GetGroup(context.Background(), hh)
	if err != nil || len(g.Members) != 3 {
		t.Fatalf("group: %+v, %v", g, err)
	}
	// Audited and published.
	recs, _ := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindGroup, ID: hh}, Limit: 100})
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"household.create", "household.invite", "household.join", "household.room.add", "household.thing.place", "household.rules"} {
		if !slices.Contains(actions, want) {
			t.Errorf("no %s in the audit: %v", want, actions)
		}
	}
	mu.Lock()
	if len(seen) < 6 || seen[len(seen)-1].ID != hh {
		t.Errorf("events: %+v", seen)
	}
	mu.Unlock()
	// A member leaves; the household keeps its guardian.
	w.must(t, w.gC, 204, "DELETE", "/api/v1/households/"+hh+"/members/"+w.gran.ID, "")
	w.refused(t, w.mumC, 409, "role", "PUT", "/api/v1/households/"+hh+"/members/"+w.mum.ID, `{"role":"dependant"}`)
	w.refused(t, w.mumC, 409, "role", "DELETE", "/api/v1/households/"+hh+"/members/"+w.mum.ID, "")
	if l := w.must(t, w.mumC, 200, "GET", "/api/v1/households", "")["households"].([]any); len(l) != 1 {
		t.Fatalf("mine: %v", l)
	}
}

func TestHouseholdBadInput(t *testing.T) {
	w := newHomeWorld(t)
	w.refused(t, w.mumC, 400, "timeZone", "POST", "/api/v1/households", `{"name":"Smiths","timeZone":"Mars/Olympus"}`)
	w.refused(t, w.mumC, 400, "timeZone", "POST", "/api/v1/households", `{"name":"Smiths","timeZone":"Local"}`)
	w.refused(t, w.mumC, 400, "name", "POST", "/api/v1/households", `{"name":"","timeZone":"UTC"}`)
	w.refused(t, w.mumC, 400, "colour", "POST", "/api/v1/households", `{"name":"Smiths","timeZone":"UTC","colour":"red"}`)
	w.refused(t, w.mumC, 400, "name", "POST", "/api/v1/households", `{"name":42,"timeZone":"UTC"}`)
	w.refused(t, w.mumC, 400, "", "POST", "/api/v1/households", `{"name":"a"} {"name":"b"}`)
	hh, room := w.family(t)
	w.refused(t, w.mumC, 409, "name", "POST", "/api/v1/households", `{"name":"smiths","timeZone":"UTC"}`)
	w.refused(t, w.mumC, 409, "name", "POST", "/api/v1/households/"+hh+"/rooms", `{"name":"KIDS' ROOM"}`)
	w.refused(t, w.mumC, 400, "name", "POST", "/api/v1/households/"+hh+"/rooms", `{"name":"a\u0000b"}`)
	w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/invitations", `{"userName":"eve","role":"guest"}`)
	w.refused(t, w.mumC, 409, "userName", "POST", "/api/v1/households/"+hh+"/invitations", `{"userName":"EVE","role":"guest"}`)
	w.refused(t, w.mumC, 400, "email", "POST", "/api/v1/households/"+hh+"/invitations", `{"email":"eve","role":"guest"}`)
	w.refused(t, w.mumC, 400, "role", "POST", "/api/v1/households/"+hh+"/invitations", `{"userName":"eve","role":"owner"}`)
	w.refused(t, w.mumC, 404, "roomId", "PUT", "/api/v1/households/"+hh+"/things/"+w.speaker.ID, `{"roomId":"nope"}`)
	for _, tc := range []struct{ rule, field string }{
		{`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"all"},"actions":["use"],"when":{"start":"7:00","end":"20:00"}}`, "rules[0].when.start"},
		{`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"all"},"actions":["teleport"]}`, "rules[0].actions[0]"},
		{`{"effect":"allow","who":{"kind":"member","member":"` + w.eve.ID + `"},"things":{"kind":"all"},"actions":["use"]}`, "rules[0].who.member"},
		{`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"room","id":"` + room + `x"},"actions":["use"]}`, "rules[0].things.id"},
		{`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"all"},"actions":["use"],"extra":1}`, "rules[0].extra"[9:]},
		{`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"all"},"actions":"use"}`, "rules.actions"},
	} {
		w.refused(t, w.mumC, 400, tc.field, "PUT", "/api/v1/households/"+hh+"/rules", `{"rules":[`+tc.rule+`]}`)
	}
	w.refused(t, w.mumC, 400, "rules", "PUT", "/api/v1/households/"+hh+"/rules", `{}`)
}

// Inviting tells a guardian nothing about which accounts exist: a user
// name or an address nobody holds (or holds unverified) is answered, and
// shown waiting, exactly as one somebody holds.
func TestHouseholdInvitationsRevealNoAccounts(t *testing.T) {
	w := newHomeWorld(t)
	hh, _ := w.family(t)
	base := "/api/v1/households/" + hh
	shape := func(out map[string]any) string {
		keys := []string{}
		for k := range out {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return strings.Join(keys, ",")
	}
	for _, pair := range [][2]string{
		{`{"userName":"eve","role":"guest"}`, `{"userName":"nobody-here","role":"guest"}`},
		{`{"email":"gran@example.org","role":"guest"}`, `{"email":"ghost@example.org","role":"guest"}`},
	} {
		known, unknown := w.must(t, w.mumC, 201, "POST", base+"/invitations", pair[0]), w.must(t, w.mumC, 201, "POST", base+"/invitations", pair[1])
		if shape(known) != shape(unknown) {
			t.Errorf("a known and an unknown invitee are answered apart:\n%v\n%v", known, unknown)
		}
		for _, out := range []map[string]any{known, unknown} {
			if _, ok := out["userId"]; ok {
				t.Errorf("the answer names an account: %v", out)
			}
		}
	}
	pending := w.must(t, w.mumC, 200, "GET", base, "")["invitations"].([]any)
	if len(pending) != 4 {
		t.Fatalf("pending: %v", pending)
	}
	for _, i := range []int{0, 2} { // the known invitee, then the unknown one
		if shape(pending[i].(map[string]any)) != shape(pending[i+1].(map[string]any)) {
			t.Errorf("pending invitations differ in what they show: %v", pending)
		}
	}
	// The invitation waits: whoever takes the name later finds it.
	ctx := context.Background()
	if _, err := w.r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "nobody-here"}, umaPW); err != nil {
		t.Fatal(err)
	}
	late := (&umaWorld{r: w.r}).signin(t, "nobody-here")
	invs := w.must(t, late, 200, "GET", "/api/v1/households/invitations", "")["invitations"].([]any)
	if len(invs) != 1 || invs[0].(map[string]any)["household"] != "Smiths" {
		t.Fatalf("the late user's invitations: %v", invs)
	}
	w.must(t, late, 204, "POST", "/api/v1/households/invitations/"+invs[0].(map[string]any)["id"].(string)+"/accept", "")
}

// The attacks of issue 14: a dependant editing policies or promoting
// itself, a guardian of another household reading or changing this one,
// a policy naming a thing the household does not own.
func TestHouseholdAttacks(t *testing.T) {
	w := newHomeWorld(t)
	hh, room := w.family(t)
	before := w.must(t, w.mumC, 200, "GET", "/api/v1/households/"+hh, "")
	allowAll := `{"rules":[{"effect":"allow","who":{"kind":"dependants"},"things":{"kind":"all"},"actions":["use","configure","pair"]}]}`

	// The dependant.
	base := "/api/v1/households/" + hh
	w.refused(t, w.emmaC, 403, "", "PUT", base+"/rules", allowAll)
	w.refused(t, w.emmaC, 403, "", "PUT", base+"/members/"+w.emma.ID, `{"role":"guardian"}`)
	w.refused(t, w.emmaC, 403, "", "PUT", base+"/members/"+w.mum.ID, `{"role":"dependant"}`)
	w.refused(t, w.emmaC, 403, "", "DELETE", base+"/members/"+w.mum.ID, "")
	w.refused(t, w.emmaC, 403, "", "PATCH", base, `{"timeZone":"Pacific/Kiritimati"}`)
	w.refused(t, w.emmaC, 403, "", "POST", base+"/invitations", `{"userName":"eve","role":"guardian"}`)
	w.refused(t, w.emmaC, 403, "", "POST", base+"/rooms", `{"name":"Den"}`)
	w.refused(t, w.emmaC, 403, "", "DELETE", base+"/rooms/"+room, "")
	w.refused(t, w.emmaC, 403, "", "DELETE", base+"/things/"+w.speaker.ID, "")
	w.refused(t, w.emmaC, 403, "", "POST", base+"/decisions", `{"userId":"`+w.emma.ID+`","thingId":"`+w.speaker.ID+`","action":"use"}`)

	// The neighbour, a guardian of her own household.
	other := w.must(t, w.evec, 201, "POST", "/api/v1/households", `{"name":"Eve's","timeZone":"UTC"}`)["id"].(string)
	otherRoom := w.must(t, w.evec, 201, "POST", "/api/v1/households/"+other+"/rooms", `{"name":"Hall"}`)["id"].(string)
	w.refused(t, w.evec, 404, "", "GET", base, "")
	w.refused(t, w.evec, 404, "", "PUT", base+"/rules", allowAll)
	w.refused(t, w.evec, 404, "", "PUT", base+"/members/"+w.eve.ID, `{"role":"guardian"}`)
	w.refused(t, w.evec, 404, "", "DELETE", base+"/members/"+w.emma.ID, "")
	w.refused(t, w.evec, 404, "", "PATCH", base, `{"timeZone":"UTC"}`)
	w.refused(t, w.evec, 404, "", "POST", base+"/invitations", `{"userName":"eve","role":"guardian"}`)
	w.refused(t, w.evec, 404, "", "DELETE", base+"/rooms/"+room, "")
	w.refused(t, w.evec, 404, "", "POST", base+"/decisions", `{"userId":"`+w.emma.ID+`","thingId":"`+w.speaker.ID+`","action":"use"}`)
	// …nor through her own household: another's room, another's thing.
	w.refused(t, w.evec, 404, "roomId", "DELETE", "/api/v1/households/"+other+"/rooms/"+room, "")
	w.refused(t, w.evec, 404, "roomId", "PUT", "/api/v1/households/"+other+"/things/"+w.eveCam.ID, `{"roomId":"`+room+`"}`)
	w.refused(t, w.evec, 403, "thingId", "PUT", "/api/v1/households/"+other+"/things/"+w.speaker.ID, `{"roomId":"`+otherRoom+`"}`)
	w.refused(t, w.evec, 404, "thingId", "DELETE", "/api/v1/households/"+other+"/things/"+w.speaker.ID, "")
	w.refused(t, w.evec, 404, "thingId", "POST", "/api/v1/households/"+other+"/decisions", `{"userId":"`+w.emma.ID+`","thingId":"`+w.speaker.ID+`","action":"use"}`)
	// An invitation is its invitee's alone.
	inv := w.must(t, w.mumC, 201, "POST", base+"/invitations", `{"userName":"eve","role":"guest"}`)["id"].(string)
	w.refused(t, w.emmaC, 404, "", "POST", "/api/v1/households/invitations/"+inv+"/accept", "")
	w.refused(t, w.emmaC, 403, "", "DELETE", "/api/v1/households/invitations/"+inv, "")

	// The guardian herself cannot name what the household does not own.
	for _, rule := range []string{
		`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"thing","id":"` + w.eveCam.ID + `"},"actions":["use"]}`,
		`{"effect":"allow","who":{"kind":"everyone"},"things":{"kind":"room","id":"` + otherRoom + `"},"actions":["use"]}`,
	} {
		w.refused(t, w.mumC, 400, "rules[0].things.id", "PUT", base+"/rules", `{"rules":[`+rule+`]}`)
	}
	w.refused(t, w.mumC, 403, "thingId", "PUT", base+"/things/"+w.eveCam.ID, `{"roomId":"`+room+`"}`)

	// Nothing changed.
	after := w.must(t, w.mumC, 200, "GET", base, "")
	delete(before, "invitations")
	delete(after, "invitations")
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("the household changed:\n%s\n%s", b1, b2)
	}

	// Without a session, or from another site.
	w.refused(t, w.r.client, 401, "", "GET", base, "")
	req, _ := http.NewRequest("PUT", w.r.base+base+"/rules", strings.NewReader(allowAll))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err := w.mumC.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
}
