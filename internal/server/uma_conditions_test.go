package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// schoolHours are the conditions of alice's share with bob in these tests.
const schoolHours = `{"zone":"Europe/Berlin","days":["mon","tue","wed","thu","fri"],"start":"07:00","end":"20:00"}`

// A share with conditions, end to end with real tokens: an RPT issued at
// 19:59 on a school day ends at 20:00, and the gateway's uma filter and
// introspection refuse it from 20:00; at 20:01 the grant refuses with the
// reason, audited as policy.deny; new conditions revoke the RPTs resting on
// the share at once. Every part reads one clock, which the test sets.
func TestUMAShareConditions(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	clock := &decisionClock{}
	at := func(hhmm string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", "2030-03-18 "+hhmm, berlin) // a Monday
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	clock.set(at("19:59"))
	g := newUMAGateway(t, func(p *Platform) { p.clock, p.decisionClock = clock.now, clock.now })
	list := g.playlist(t, "Homework")
	path := "/music/playlists/" + list
	alice := g.signin(t, "alice")
	code, out := g.call2(t, alice, "POST", "/api/v1/uma/shares", `{"resourceId":`+jsonQuote(list)+`,"user":"bob","scopes":["play"],"conditions":`+schoolHours+`}`)
	if code != 201 || out["when"] != "from 07:00 to 20:00 on school days (Europe/Berlin)" {
		t.Fatalf("share: %d %v", code, out)
	}
	share := out["id"].(string)
	// bob's client's token for bob, the claim token, issued on the clock.
	claim := func() string {
		return g.userToken(t, g.app.id, g.bob, func(c *tokens.Claims) { c.IssuedAt, c.ExpiresAt = clock.now(), clock.now().Add(5*time.Minute) })
	}
	redeem := func() (int, map[string]any) {
		resp, body := g.call(t, "GET", path)
		return g.token(t, g.app, url.Values{"ticket": {g.umaTicket(t, resp, body)}, "claim_token": {claim()}, "claim_token_format": {uma.FormatAccessToken}})
	}

	code, out = redeem()
	if code != 200 || out["expires_in"] != float64(60) {
		t.Fatalf("at 19:59: %d %v, want an RPT for 60 s", code, out)
	}
	rpt := out["access_token"].(string)
	pat := g.pat(t, g.music)
	in := g.introspect(t, pat, rpt)
	end := float64(at("20:00").Unix())
	perms, _ := in["permissions"].([]any)
	if in["active"] != true || in["exp"] != end || len(perms) != 1 || perms[0].(map[string]any)["exp"] != end {
		t.Fatalf("introspection at 19:59: %v, want exp %v", in, end)
	}
	if resp, body := g.call(t, "GET", path, "Authorization", "Bearer "+rpt); resp.StatusCode != 200 {
		t.Fatalf("gateway at 19:59: %d %s", resp.StatusCode, body)
	}
	<-g.seen

	clock.set(at("20:00"))
	if resp, body := g.call(t, "GET", path, "Authorization", "Bearer "+rpt); resp.StatusCode == 200 {
		t.Fatalf("gateway at 20:00 let the RPT through: %s", body)
	}
	if in := g.introspect(t, pat, rpt); in["active"] != false {
		t.Fatalf("introspection at 20:00: %v", in)
	}

	clock.set(at("20:01"))
	code, out = redeem()
	reason := "outside the share's times: from 07:00 to 20:00 on school days (Europe/Berlin)"
	if code != 403 || out["error"] != "request_denied" || out["error_description"] != reason {
		t.Fatalf("at 20:01: %d %v", code, out)
	}
	recs, err := g.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: "uma_resource", ID: list}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var denied map[string]any
	for _, r := range recs {
		if r.Action == "policy.deny" && r.Actor == "user:"+g.bob.ID {
			_ = json.Unmarshal(r.Detail, &denied)
		}
	}
	if denied["door"] != "uma" || denied["rule"] != "share:"+share || denied["reason"] != reason || denied["localTime"] != "2030-03-18T20:01:00+01:00" {
		t.Fatalf("policy.deny record: %v (of %d records)", denied, len(recs))
	}
	// No request is left for alice: she decided already.
	if code, out := g.call2(t, alice, "GET", "/api/v1/uma/requests", ""); code != 200 || len(out["requests"].([]any)) != 0 {
		t.Fatalf("requests: %d %v", code, out)
	}

	// Later evenings: an RPT until 22:00 at most; narrowing the share
	// again ends it at once, at the gateway and at introspection.
	if code, out := g.call2(t, alice, "PUT", "/api/v1/uma/shares/"+share+"/conditions", `{"zone":"Europe/Berlin","start":"07:00","end":"22:00"}`); code != 200 || out["when"] != "from 07:00 to 22:00 (Europe/Berlin)" {
		t.Fatalf("new conditions: %d %v", code, out)
	}
	code, out = redeem()
	if code != 200 {
		t.Fatalf("at 20:01 until 22:00: %d %v", code, out)
	}
	rpt = out["access_token"].(string)
	if resp, body := g.call(t, "GET", path, "Authorization", "Bearer "+rpt); resp.StatusCode != 200 {
		t.Fatalf("gateway at 20:01 until 22:00: %d %s", resp.StatusCode, body)
	}
	<-g.seen
	if code, out := g.call2(t, alice, "PUT", "/api/v1/uma/shares/"+share+"/conditions", schoolHours); code != 200 {
		t.Fatalf("school hours again: %d %v", code, out)
	}
	resp, body := g.call(t, "GET", path, "Authorization", "Bearer "+rpt)
	if problemError(t, body) != "invalid_token" || !strings.Contains(body, "revoked") {
		t.Fatalf("gateway after the conditions changed: %d %s", resp.StatusCode, body)
	}
	if in := g.introspect(t, pat, rpt); in["active"] != false {
		t.Fatalf("introspection after the conditions changed: %v", in)
	}
}

// Bad conditions are refused with a 400 naming the field, whatever they
// carry; nothing is stored.
func TestUMAShareConditionsBadInput(t *testing.T) {
	g := newUMAGateway(t)
	list := g.playlist(t, "Homework")
	alice := g.signin(t, "alice")
	for _, tc := range []struct{ conditions, field string }{
		{`{"zone":"Mars/Olympus","start":"07:00","end":"20:00"}`, "conditions.zone"},
		{`{"zone":"Local","start":"07:00","end":"20:00"}`, "conditions.zone"},
		{`{"zone":"../../../etc/passwd","start":"07:00","end":"20:00"}`, "conditions.zone"},
		{`{"zone":"Europe/Berlin\"); permit(principal, action, resource); //"}`, "conditions.zone"},
		{`{"start":"07:00"}`, "conditions.end"},
		{`{"start":"25:00","end":"20:00"}`, "conditions.start"},
		{`{"start":"07:00","end":"07:00"}`, "conditions.end"},
		{`{"start":"07:00\"; forbid(principal, action, resource);","end":"20:00"}`, "conditions.start"},
		{`{"days":["mon","<script>alert(1)</script>"]}`, "conditions.days[1]"},
		{`{"days":"mon"}`, "conditions.days"},
		{`{"firstDate":"2030-03-20","lastDate":"2030-03-19"}`, "conditions.lastDate"},
		{`{"lastDate":"next sunday"}`, "conditions.lastDate"},
	} {
		body := `{"resourceId":` + jsonQuote(list) + `,"user":"bob","scopes":["play"],"conditions":` + tc.conditions + `}`
		code, out := g.call2(t, alice, "POST", "/api/v1/uma/shares", body)
		if code != 400 || out["field"] != tc.field {
			t.Errorf("%s: %d %v, want 400 naming %s", tc.conditions, code, out, tc.field)
		}
	}
	if code, out := g.call2(t, alice, "GET", "/api/v1/uma/shares", ""); code != 200 || len(out["shares"].([]any)) != 0 {
		t.Fatalf("a refused share was stored: %v", out)
	}
	// Another owner's share, or a missing one, is not found; bad conditions
	// of one's own are refused as on creation.
	code, out := g.call2(t, alice, "POST", "/api/v1/uma/shares", `{"resourceId":`+jsonQuote(list)+`,"user":"bob","scopes":["play"]}`)
	if code != 201 || out["when"] != "always" {
		t.Fatalf("share: %d %v", code, out)
	}
	share := out["id"].(string)
	if code, out := g.call2(t, g.signin(t, "bob"), "PUT", "/api/v1/uma/shares/"+share+"/conditions", `{"start":"07:00","end":"20:00"}`); code != 404 {
		t.Errorf("bob changed alice's share: %d %v", code, out)
	}
	if code, out := g.call2(t, alice, "PUT", "/api/v1/uma/shares/"+share+"/conditions", `{"zone":"Nowhere/Town"}`); code != 400 || out["field"] != "conditions.zone" {
		t.Errorf("bad zone on change: %d %v", code, out)
	}
	// Without a zone, alice's (no household) is UTC.
	if code, out := g.call2(t, alice, "PUT", "/api/v1/uma/shares/"+share+"/conditions", `{"days":["sat","sun"]}`); code != 200 || out["when"] != "on weekends (UTC)" {
		t.Errorf("default zone: %d %v", code, out)
	}
}
