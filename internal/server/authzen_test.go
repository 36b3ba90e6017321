package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/store"
)

// pdp is an AuthZEN client written from the Authorization API 1.0 text: it
// discovers the endpoints from the PDP metadata (§9) and POSTs JSON with an
// OAuth access token and an X-Request-ID (§12).
type pdp struct {
	w                       *homeWorld
	token                   string
	evaluation, evaluations string
}

func newPDP(t *testing.T, w *homeWorld, c clientCreds, scope string) *pdp {
	t.Helper()
	resp, err := w.r.client.Get(w.r.base + "/.well-known/authzen-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("metadata: %d %v", resp.StatusCode, err)
	}
	// §9.3: the metadata names the PDP the client asked.
	if meta["policy_decision_point"] != w.r.p.Config.HTTP.PublicURL {
		t.Fatalf("policy_decision_point %q, want %q", meta["policy_decision_point"], w.r.p.Config.HTTP.PublicURL)
	}
	cc := clientcredentials.Config{ClientID: c.id, ClientSecret: c.secret, TokenURL: w.r.base + "/oauth2/token", Scopes: []string{scope}}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, w.r.client))
	if err != nil {
		t.Fatal(err)
	}
	rebase := func(u string) string { return w.r.base + strings.TrimPrefix(u, w.r.p.Config.HTTP.PublicURL) }
	return &pdp{w: w, token: tok.AccessToken, evaluation: rebase(meta["access_evaluation_endpoint"]), evaluations: rebase(meta["access_evaluations_endpoint"])}
}

func (p *pdp) post(t *testing.T, url, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "bfe9eb29-ab87-4ca3-be83-a1d5d8305716")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.w.r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return resp, out
}

// decide asks one evaluation and returns the decision and its reason.
func (p *pdp) decide(t *testing.T, body string) (bool, string) {
	t.Helper()
	resp, out := p.post(t, p.evaluation, body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") != "bfe9eb29-ab87-4ca3-be83-a1d5d8305716" {
		t.Fatalf("evaluation: %d %v (X-Request-ID %q)", resp.StatusCode, out, resp.Header.Get("X-Request-ID"))
	}
	return out["decision"].(bool), out["context"].(map[string]any)["reason_user"].(map[string]any)["en"].(string)
}

func evalBody(user, thing, action, context string) string {
	b := fmt.Sprintf(`{"subject":{"type":"user","id":%q},"resource":{"type":"thing","id":%q},"action":{"name":%q}`, user, thing, action)
	if context != "" {
		b += `,"context":` + context
	}
	return b + "}"
}

func TestAuthZEN(t *testing.T) {
	w := newHomeWorld(t)
	hh, room := w.family(t)
	// A pairing window that is closed now: two to three hours from now, on
	// the household's clock.
	berlin, _ := time.LoadLocation("Europe/Berlin")
	now := time.Now().In(berlin)
	start, end := now.Add(2*time.Hour).Format("15:04"), now.Add(3*time.Hour).Format("15:04")
	rules := fmt.Sprintf(`{"rules":[
		{"id":"emma-use","effect":"allow","who":{"kind":"member","member":%q},"things":{"kind":"room","id":%q},"actions":["use","configure"]},
		{"id":"no-config","effect":"deny","who":{"kind":"dependants"},"things":{"kind":"all"},"actions":["configure"]},
		{"id":"pairing","effect":"allow","who":{"kind":"dependants"},"things":{"kind":"all"},"actions":["pair"],"when":{"start":%q,"end":%q}}]}`,
		w.emma.ID, room, start, end)
	w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/rules", rules)
	p := newPDP(t, w, w.pep, "authzen:evaluate")

	if ok, why := p.decide(t, evalBody(w.emma.ID, w.speaker.ID, "use", "")); !ok || !strings.Contains(why, "Emma may use or configure the things in Kids' room") {
		t.Errorf("use: %v %q", ok, why)
	}
	if ok, why := p.decide(t, evalBody(w.emma.ID, w.speaker.ID, "configure", "")); ok || why != "denied: dependants may not configure every thing of the household" {
		t.Errorf("configure: %v %q", ok, why)
	}
	recs, _ := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: w.speaker.ID}})
	if n := len(recs); n == 0 || recs[n-1].Action != "policy.deny" || recs[n-1].Actor != "user:"+w.emma.ID ||
		!strings.Contains(string(recs[n-1].Detail), `"door":"authzen"`) || !strings.Contains(string(recs[n-1].Detail), `"rule":"no-config"`) {
		t.Errorf("the refusal is not audited: %+v", recs)
	}
	if ok, why := p.decide(t, evalBody(w.mum.ID, w.speaker.ID, "configure", "")); !ok || !strings.Contains(why, "guardians") {
		t.Errorf("guardian: %v %q", ok, why)
	}
	if ok, _ := p.decide(t, evalBody(w.eve.ID, w.speaker.ID, "use", "")); ok {
		t.Error("the neighbour may use the speaker")
	}
	// A client's own time and zone are ignored: the server's clock decides.
	inWindow := now.Add(150 * time.Minute)
	for _, ctx := range []string{"",
		fmt.Sprintf(`{"time":%q}`, inWindow.Format(time.RFC3339)),
		fmt.Sprintf(`{"time":%q,"timeZone":"Europe/Berlin","local":{"minute":%d,"weekday":%d}}`, inWindow.UTC().Format(time.RFC3339), inWindow.Hour()*60+inWindow.Minute(), int(inWindow.Weekday())),
		`{"timeZone":"Pacific/Kiritimati"}`,
	} {
		ok, why := p.decide(t, evalBody(w.emma.ID, w.speaker.ID, "pair", ctx))
		if ok || !strings.HasPrefix(why, "outside the allowed times: dependants may pair every thing of the household from "+start) {
			t.Errorf("pair with context %s: %v %q", ctx, ok, why)
		}
	}

	// Boxcarred (§7): defaults, an override, and the three semantics.
	batch := func(semantic string) []any {
		body := fmt.Sprintf(`{"subject":{"type":"user","id":%q},"action":{"name":"use"},"options":{"evaluations_semantic":%q},"evaluations":[
			{"resource":{"type":"thing","id":%q}},
			{"resource":{"type":"thing","id":%q},"action":{"name":"configure"}},
			{"resource":{"type":"thing","id":%q}}]}`, w.emma.ID, semantic, w.speaker.ID, w.speaker.ID, w.eveCam.ID)
		resp, out := p.post(t, p.evaluations, body)
		if resp.StatusCode != 200 {
			t.Fatalf("evaluations: %d %v", resp.StatusCode, out)
		}
		return out["evaluations"].([]any)
	}
	decisions := func(evs []any) []bool {
		var d []bool
		for _, e := range evs {
			d = append(d, e.(map[string]any)["decision"].(bool))
		}
		return d
	}
	for semantic, want := range map[string]string{
		"execute_all":            "[true false false]",
		"deny_on_first_deny":     "[true false]",
		"permit_on_first_permit": "[true]",
	} {
		if got := fmt.Sprint(decisions(batch(semantic))); got != want {
			t.Errorf("%s: %s, want %s", semantic, got, want)
		}
	}
	// Without evaluations, the top-level tuple is one evaluation.
	if resp, out := p.post(t, p.evaluations, evalBody(w.emma.ID, w.speaker.ID, "use", "")); resp.StatusCode != 200 || len(out["evaluations"].([]any)) != 1 {
		t.Errorf("evaluations without evaluations: %d %v", resp.StatusCode, out)
	}
}

func TestAuthZENRefusals(t *testing.T) {
	w := newHomeWorld(t)
	p := newPDP(t, w, w.pep, "authzen:evaluate")
	ok := evalBody("u", "t", "use", "")
	for _, tc := range []struct {
		url, body, field string
	}{
		{p.evaluation, `not json`, "body"},
		{p.evaluation, `["subject"]`, "body"},
		{p.evaluation, `{"resource":{"type":"thing","id":"t"},"action":{"name":"use"}}`, "subject"},
		{p.evaluation, `{"subject":"alice","resource":{"type":"thing","id":"t"},"action":{"name":"use"}}`, "subject"},
		{p.evaluation, `{"subject":{"type":"group","id":"g"},"resource":{"type":"thing","id":"t"},"action":{"name":"use"}}`, "subject.type"},
		{p.evaluation, `{"subject":{"type":"user","id":""},"resource":{"type":"thing","id":"t"},"action":{"name":"use"}}`, "subject.id"},
		{p.evaluation, `{"subject":{"type":"user","id":7},"resource":{"type":"thing","id":"t"},"action":{"name":"use"}}`, "subject.id"},
		{p.evaluation, `{"subject":{"type":"user","id":"u"},"resource":{"type":"document","id":"t"},"action":{"name":"use"}}`, "resource.type"},
		{p.evaluation, `{"subject":{"type":"user","id":"u"},"resource":{"type":"thing","id":"t"}}`, "action"},
		{p.evaluation, `{"subject":{"type":"user","id":"u"},"resource":{"type":"thing","id":"t"},"action":{"name":"can_read"}}`, "action.name"},
		{p.evaluation, `{"subject":{"type":"user","id":"u"},"resource":{"type":"thing","id":"t"},"action":{"name":"use","properties":{"scope":"x"}}}`, "action.properties.scope"},
		{p.evaluation, `{"subject":{"type":"user","id":"u"},"resource":{"type":"thing","id":"t"},"action":{"name":"use"},"context":[1]}`, "context"},
		{p.evaluations, `{"evaluations":[]}`, "evaluations"},
		{p.evaluations, `{"evaluations":{}}`, "evaluations"},
		{p.evaluations, `{"subject":{"type":"user","id":"u"},"action":{"name":"use"},"evaluations":[{"resource":{"type":"thing","id":"t"}},{"resource":{"type":"thing"}}]}`, "evaluations[1].resource.id"},
		{p.evaluations, `{"evaluations":[` + ok + `],"options":{"evaluations_semantic":"maybe"}}`, "options.evaluations_semantic"},
		{p.evaluations, `{"evaluations":[` + strings.Repeat(ok+",", 100) + ok + `]}`, "evaluations"},
	} {
		resp, out := p.post(t, tc.url, tc.body)
		if resp.StatusCode != 400 || out["field"] != tc.field {
			t.Errorf("%.80s: %d %v, want 400 naming %s", tc.body, resp.StatusCode, out, tc.field)
		}
	}
	// A client without the scope, and no token at all.
	other := newPDP(t, w, w.other, "profile")
	resp, out := other.post(t, other.evaluation, ok)
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("without the scope: %d %v %q", resp.StatusCode, out, resp.Header.Get("WWW-Authenticate"))
	}
	other.token = ""
	if resp, out := other.post(t, other.evaluations, ok); resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("without a token: %d %v", resp.StatusCode, out)
	}
	other.token = p.token + "x"
	if resp, _ := other.post(t, other.evaluation, ok); resp.StatusCode != 401 {
		t.Errorf("a forged token: %d", resp.StatusCode)
	}
}

// Administrators load a platform-wide Cedar set; a refused one names its
// line and leaves the set in force; decisions follow at once.
func TestPlatformPoliciesAPI(t *testing.T) {
	w := newHomeWorld(t)
	hh, room := w.family(t)
	w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/rules",
		`{"rules":[{"id":"emma-use","effect":"allow","who":{"kind":"member","member":"`+w.emma.ID+`"},"things":{"kind":"room","id":"`+room+`"},"actions":["use"]}]}`)
	p := newPDP(t, w, w.pep, "authzen:evaluate")
	admin := func(req *http.Request) { req.SetBasicAuth("admin", adminPassword(t, w.r)) }
	put := func(body string) (int, map[string]any) {
		req, _ := http.NewRequest("PUT", w.r.base+"/api/v1/admin/policies", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		admin(req)
		resp, err := w.r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	good := `@id("no-kids-streaming") @reason("the platform keeps dependants off every speaker")
forbid (principal in Role::"dependant", action == Action::"use", resource in Model::"Echo 3");`
	body, _ := json.Marshal(map[string]string{"cedar": good})
	if code, out := put(string(body)); code != 200 || out["revision"] != 1.0 || out["policies"] != 1.0 {
		t.Fatalf("put: %d %v", code, out)
	}
	if ok, why := p.decide(t, evalBody(w.emma.ID, w.speaker.ID, "use", "")); ok || why != "denied: the platform keeps dependants off every speaker" {
		t.Fatalf("after the platform forbid: %v %q", ok, why)
	}
	// Refused: a typo on line 3; the set in force stays.
	bad, _ := json.Marshal(map[string]any{"cedar": "permit (principal, action, resource);\n\nforbid (principal, action, resource) when { context.local.hour > 20 };", "revision": 1})
	code, out := put(string(bad))
	errs, _ := out["errors"].([]any)
	if code != 400 || out["field"] != "cedar" || len(errs) != 1 || errs[0].(map[string]any)["line"] != 3.0 ||
		!strings.Contains(errs[0].(map[string]any)["reason"].(string), "attribute `hour`") {
		t.Fatalf("refused set: %d %v", code, out)
	}
	if ok, _ := p.decide(t, evalBody(w.emma.ID, w.speaker.ID, "use", "")); ok {
		t.Fatal("a refused set replaced the one in force")
	}
	// A stale revision is refused; "" removes every platform policy.
	if code, out := put(`{"cedar":"","revision":7}`); code != 409 || out["field"] != "revision" {
		t.Fatalf("stale: %d %v", code, out)
	}
	if code, out := put(`{"cedar":"","revision":1}`); code != 200 || out["policies"] != 0.0 {
		t.Fatalf("emptied: %d %v", code, out)
	}
	if ok, _ := p.decide(t, evalBody(w.emma.ID, w.speaker.ID, "use", "")); !ok {
		t.Fatal("the household rule does not apply once the platform set is empty")
	}
	// Only administrators: a guardian's session is not enough.
	req, _ := http.NewRequest("PUT", w.r.base+"/api/v1/admin/policies", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := w.mumC.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("as a guardian: %v %v", resp.StatusCode, err)
	}
	if code, body := w.r.get(t, "/api/v1/admin/policies", admin); code != 200 || !strings.Contains(body, `"revision":2`) {
		t.Fatalf("get: %d %s", code, body)
	}
}
