package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// householdOf is the id in the page path a redirect names.
var householdOf = regexp.MustCompile(`^/account/household/([^/?]+)`)

// TestHouseholdPages drives the pages without JavaScript, as a guardian
// and a dependant do: create, invite, accept, a room, a thing placed, a
// rule through the form (and a wrong one back at its field), the rule in
// words, the preview on the households' clock, deleting the rule.
func TestHouseholdPages(t *testing.T) {
	w := newHomeWorld(t)
	u := &umaWorld{r: w.r}
	mum, emma := u.pageClient(t, "mum"), u.pageClient(t, "emma")
	if r := mum.get("/account"); !strings.Contains(r.body, `href="/account/household"`) {
		t.Fatalf("the account page does not link the households: %.300s", r.body)
	}
	if r := mum.get("/account/household"); r.status != 200 || !strings.Contains(r.body, `id="empty"`) {
		t.Fatalf("no household yet: %d %.300s", r.status, r.body)
	}
	csrf := mum.formToken("/account/household")
	r := mum.post("/account/household", url.Values{"csrf": {csrf}, "name": {"Smiths"}, "timeZone": {"Mars/Olympus"}})
	if r.status != 400 || !strings.Contains(r.body, `href="#create-timeZone"`) || !strings.Contains(r.body, `value="Smiths"`) {
		t.Fatalf("a wrong time zone: %d %.2000s", r.status, r.body)
	}
	r = mum.post("/account/household", url.Values{"csrf": {csrf}, "name": {"Smiths"}, "timeZone": {"Europe/Berlin"}})
	m := householdOf.FindStringSubmatch(r.location)
	if r.status != 303 || m == nil || !strings.HasSuffix(r.location, "?done=created") {
		t.Fatalf("create: %d %q", r.status, r.location)
	}
	hh := m[1]
	page := "/account/household/" + hh
	if r := mum.get(r.location); r.status != 200 || !strings.Contains(r.body, "Household created.") {
		t.Fatalf("after creating: %d %.300s", r.status, r.body)
	}
	csrf = mum.formToken(page)
	post := func(p *pageClient, path string, form url.Values, want string) pageResponse {
		t.Helper()
		form.Set("csrf", p.formToken(page))
		r := p.post(path, form)
		if r.status != 303 || r.location != page+"?done="+want {
			t.Fatalf("POST %s: %d %q %.1500s", path, r.status, r.location, r.body)
		}
		return r
	}
	post(mum, page+"/invitations", url.Values{"kind": {"userName"}, "invitee": {"emma"}, "role": {"dependant"}}, "invited")
	if r := mum.get(page); !strings.Contains(r.body, "user name emma") {
		t.Fatalf("the invitation waiting: %.3000s", r.body)
	}

	// Emma accepts from her list.
	r = emma.get("/account/household")
	inv := regexp.MustCompile(`data-invitation="([^"]+)"`).FindStringSubmatch(r.body)
	if inv == nil || !strings.Contains(r.body, "Mum invites you as dependant") {
		t.Fatalf("emma's invitations: %.2000s", r.body)
	}
	r = emma.post("/account/household/invitations/"+inv[1]+"/accept", url.Values{"csrf": {emma.formToken("/account/household")}})
	if r.status != 303 || r.location != page+"?done=joined" {
		t.Fatalf("accept: %d %q %.500s", r.status, r.location, r.body)
	}

	// A room, the speaker in it, and a rule.
	post(mum, page+"/rooms", url.Values{"name": {"Kids' room"}}, "room")
	room := regexp.MustCompile(`data-room="([^"]+)"`).FindStringSubmatch(mum.get(page).body)[1]
	post(mum, page+"/things", url.Values{"thing": {w.speaker.ID}, "room": {room}}, "placed")
	rule := url.Values{"effect": {"allow"}, "who": {"member:" + w.emma.ID}, "action": {"use"}, "things": {"room:" + room},
		"day": {"mon", "tue", "wed", "thu", "fri"}, "start": {"7pm"}, "end": {"20:00"}}
	rule.Set("csrf", csrf)
	r = mum.post(page+"/rules", rule)
	if r.status != 400 || !strings.Contains(r.body, `href="#rule-start"`) || !strings.Contains(r.body, `id="rule-start-error"`) ||
		!strings.Contains(r.body, `value="member:`+w.emma.ID+`" selected`) || !strings.Contains(r.body, `id="rule-day-wed" name="day" value="wed" checked`) {
		t.Fatalf("a wrong start: %d %.6000s", r.status, r.body)
	}
	rule.Set("start", "07:00")
	post(mum, page+"/rules", rule, "rule")
	const words = "Emma may use the things in Kids&#39; room from 07:00 to 20:00 on school days"
	body := mum.get(page).body
	if !strings.Contains(body, words) || !strings.Contains(body, `data-thing="`+w.speaker.ID+`"`) {
		t.Fatalf("the rule in words and the speaker in its room: %.6000s", body)
	}
	// Emma reads the household and its rules; she has no form to change them.
	body = emma.get(page).body
	if !strings.Contains(body, words) || strings.Contains(body, `id="rule"`) || strings.Contains(body, `id="invite"`) || strings.Contains(body, "Change<") {
		t.Fatalf("emma's view: %.6000s", body)
	}

	// Would Emma's use be allowed? On the households' clock.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ask := page + "?preview=1&user=" + w.emma.ID + "&thing=" + w.speaker.ID + "&action=use"
	w.clock.set(time.Date(2025, 3, 17, 19, 30, 0, 0, berlin))
	if r := mum.get(ask); r.status != 200 || !strings.Contains(r.body, "<strong>Yes.</strong> Allowed: "+words) || !strings.Contains(r.body, "Monday 2025-03-17 19:30 CET") {
		t.Fatalf("preview at 19:30: %d %.6000s", r.status, r.body)
	}
	w.clock.set(time.Date(2025, 3, 17, 20, 30, 0, 0, berlin))
	if r := mum.get(ask); !strings.Contains(r.body, "<strong>No.</strong> Outside the allowed times: "+words) {
		t.Fatalf("preview at 20:30: %.6000s", r.body)
	}
	// The reason in the reader's language, the rule in it too.
	req, _ := http.NewRequest("GET", mum.base+ask, nil)
	req.Header.Set("Accept-Language", "de")
	if r := mum.do(req); !strings.Contains(r.body, "<strong>Nein.</strong> Außerhalb der erlaubten Zeiten: Emma darf die Dinge in Kids&#39; room") {
		t.Fatalf("preview in German: %.6000s", r.body)
	}
	// And what the policy engine refuses of the question.
	req, _ = http.NewRequest("GET", mum.base+page+"?preview=1&user="+w.emma.ID+"&thing="+w.speaker.ID+"&action=fly", nil)
	req.Header.Set("Accept-Language", "de")
	if r := mum.do(req); r.status != 400 || !strings.Contains(r.body, "&#34;fly&#34; ist keine von use, configure, pair") {
		t.Fatalf("a wrong action in German: %d %.6000s", r.status, r.body)
	}
	if r := mum.get(page + "?preview=1&user=" + w.emma.ID + "&thing=" + w.speaker.ID + "&action=fly"); r.status != 400 || !strings.Contains(r.body, `href="#preview-action"`) {
		t.Fatalf("preview of a wrong action: %d %.3000s", r.status, r.body)
	}
	if r := emma.get(ask); r.status != 403 || strings.Contains(r.body, "preview-result") {
		t.Fatalf("emma previews: %d %.3000s", r.status, r.body)
	}

	ruleID := regexp.MustCompile(`data-rule="([^"]+)"`).FindStringSubmatch(mum.get(page).body)[1]
	post(mum, page+"/rules/"+ruleID+"/delete", url.Values{}, "ruledeleted")
	if body := mum.get(page).body; strings.Contains(body, words) || !strings.Contains(body, `id="no-rules"`) {
		t.Fatalf("after deleting the rule: %.3000s", body)
	}
	post(mum, page+"/timezone", url.Values{"timeZone": {"America/New_York"}}, "timezone")
	post(mum, page+"/members/"+w.emma.ID+"/role", url.Values{"role": {"guest"}}, "role")
	post(mum, page+"/things/"+w.speaker.ID+"/remove", url.Values{}, "unplaced")
	post(mum, page+"/rooms/"+room+"/delete", url.Values{}, "roomdeleted")
	// Emma leaves.
	r = emma.post(page+"/members/"+w.emma.ID+"/remove", url.Values{"csrf": {emma.formToken(page)}})
	if r.status != 303 || r.location != "/account/household?done=left" {
		t.Fatalf("leave: %d %q", r.status, r.location)
	}
}

// The attacks on the pages: a dependant changing rules or roles through
// the forms, forms without their CSRF token or from another site, and a
// guardian of another household naming this one's ids, directly or
// through her own household's forms. Nothing changes.
func TestHouseholdPagesAttacks(t *testing.T) {
	w := newHomeWorld(t)
	hh, room := w.family(t)
	rules := `{"rules":[{"id":"kids","effect":"allow","who":{"kind":"member","member":"` + w.emma.ID + `"},"things":{"kind":"room","id":"` + room + `"},"actions":["use"]}]}`
	w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/rules", rules)
	inv := w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/invitations", `{"userName":"someone","role":"guardian"}`)["id"].(string)
	before := w.must(t, w.mumC, 200, "GET", "/api/v1/households/"+hh, "")
	u := &umaWorld{r: w.r}
	mum, emma, eve := u.pageClient(t, "mum"), u.pageClient(t, "emma"), u.pageClient(t, "eve")
	page := "/account/household/" + hh
	allowAll := url.Values{"effect": {"allow"}, "who": {"dependants"}, "action": {"use", "configure", "pair"}, "things": {"all"}}
	refused := func(p *pageClient, path string, form url.Values, status int, text string) {
		t.Helper()
		r := p.post(path, form)
		if r.status != status || !strings.Contains(r.body, text) {
			t.Errorf("POST %s %v: %d, want %d with %q: %.1500s", path, form, r.status, status, text, r.body)
		}
	}
	with := func(f url.Values, csrf string) url.Values {
		g := url.Values{"csrf": {csrf}}
		for k, v := range f {
			g[k] = v
		}
		return g
	}

	// The dependant, with her own valid token.
	tok := emma.formToken(page)
	const onlyGuardians = "Only the household&#39;s guardians may do this; you are a dependant."
	refused(emma, page+"/rules", with(allowAll, tok), 403, onlyGuardians)
	refused(emma, page+"/rules/kids/delete", with(nil, tok), 403, onlyGuardians)
	refused(emma, page+"/members/"+w.emma.ID+"/role", with(url.Values{"role": {"guardian"}}, tok), 403, onlyGuardians)
	refused(emma, page+"/members/"+w.mum.ID+"/role", with(url.Values{"role": {"dependant"}}, tok), 403, onlyGuardians)
	refused(emma, page+"/members/"+w.mum.ID+"/remove", with(nil, tok), 403, onlyGuardians)
	refused(emma, page+"/timezone", with(url.Values{"timeZone": {"UTC"}}, tok), 403, onlyGuardians)
	refused(emma, page+"/invitations", with(url.Values{"kind": {"userName"}, "invitee": {"eve"}, "role": {"guardian"}}, tok), 403, onlyGuardians)
	refused(emma, page+"/invitations/"+inv+"/withdraw", with(nil, tok), 403, onlyGuardians)
	refused(emma, page+"/rooms", with(url.Values{"name": {"Den"}}, tok), 403, onlyGuardians)
	refused(emma, page+"/rooms/"+room+"/delete", with(nil, tok), 403, onlyGuardians)
	refused(emma, page+"/things/"+w.speaker.ID+"/remove", with(nil, tok), 403, onlyGuardians)

	// The guardian's browser, made to post by another site or without the
	// token of her session.
	refused(mum, page+"/rules", allowAll, 403, "Form expired")
	refused(mum, page+"/rules", with(allowAll, tok), 403, "Form expired") // emma's token, mum's cookie
	r := mum.postFrom("https://evil.example", page+"/rules", with(allowAll, mum.formToken(page)))
	if r.status != 403 || !strings.Contains(r.body, "Request refused") {
		t.Errorf("cross-site: %d %.500s", r.status, r.body)
	}

	// The neighbour: a guardian, of her own household.
	w.must(t, w.evec, 201, "POST", "/api/v1/households", `{"name":"Eve's","timeZone":"UTC"}`)
	eves := w.must(t, w.evec, 200, "GET", "/api/v1/households", "")["households"].([]any)[0].(map[string]any)["id"].(string)
	w.must(t, w.evec, 201, "POST", "/api/v1/households/"+eves+"/rooms", `{"name":"Hall"}`)
	own := "/account/household/" + eves
	tok = eve.formToken(own)
	if r := eve.get(page); r.status != 404 || strings.Contains(r.body, "Smiths") || strings.Contains(r.body, "Emma") {
		t.Errorf("eve reads the Smiths: %d %.500s", r.status, r.body)
	}
	const notFound = "Household not found"
	refused(eve, page+"/rules", with(allowAll, tok), 404, notFound)
	refused(eve, page+"/members/"+w.eve.ID+"/role", with(url.Values{"role": {"guardian"}}, tok), 404, notFound)
	refused(eve, page+"/rooms/"+room+"/delete", with(nil, tok), 404, notFound)
	refused(eve, page+"/invitations/"+inv+"/withdraw", with(nil, tok), 404, notFound)
	// …nor through her own household's forms.
	refused(eve, own+"/rooms/"+room+"/delete", with(nil, tok), 404, "No room")
	refused(eve, own+"/rules/kids/delete", with(nil, tok), 404, "No rule kids")
	refused(eve, own+"/invitations/"+inv+"/withdraw", with(nil, tok), 404, "No invitation")
	refused(eve, own+"/things/"+w.speaker.ID+"/remove", with(nil, tok), 404, "No thing")
	refused(eve, own+"/things", with(url.Values{"thing": {w.speaker.ID}, "room": {room}}, tok), 403, "You own no thing")
	refused(eve, own+"/rules", with(url.Values{"effect": {"allow"}, "who": {"member:" + w.emma.ID}, "action": {"use"}, "things": {"all"}}, tok), 400, `href="#rule-who"`)
	refused(eve, own+"/rules", with(url.Values{"effect": {"allow"}, "who": {"everyone"}, "action": {"use"}, "things": {"room:" + room}}, tok), 400, `href="#rule-things"`)
	refused(eve, own+"/rules", with(url.Values{"effect": {"allow"}, "who": {"everyone"}, "action": {"use"}, "things": {"thing:" + w.speaker.ID}}, tok), 400, `href="#rule-things"`)
	refused(eve, "/account/household/invitations/"+inv+"/accept", with(nil, eve.formToken("/account/household")), 404, "No invitation")
	if r := eve.get(own + "?preview=1&user=" + w.emma.ID + "&thing=" + w.speaker.ID + "&action=use"); r.status != 404 || !strings.Contains(r.body, `href="#preview-thing"`) {
		t.Errorf("eve previews the Smiths' speaker: %d %.1500s", r.status, r.body)
	}

	// Without a session: to the sign-in page, and back here after it.
	anon := &pageClient{t: t, base: w.r.base, c: w.r.browser()}
	anon.c.CheckRedirect = mum.c.CheckRedirect
	if r := anon.get(page); r.status != 303 || r.location != "/signin?return_to="+url.QueryEscape(page) {
		t.Errorf("anonymous: %d %q", r.status, r.location)
	}

	after := w.must(t, w.mumC, 200, "GET", "/api/v1/households/"+hh, "")
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("the household changed:\n%s\n%s", b1, b2)
	}
}
