package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// payload is the claims of a JWT, unverified (the platform signed it).
func payload(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var out map[string]any
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deviceStart asks for a device code as the public client of a thing.
func (w *homeWorld) deviceStart(t *testing.T, client string) (deviceCode, userCode string) {
	t.Helper()
	code, out := w.tokenForm(t, "/oauth2/device_authorization", url.Values{"client_id": {client}, "scope": {"speaker:play offline_access"}})
	if code != 200 {
		t.Fatalf("device authorization: %d %v", code, out)
	}
	return out["device_code"].(string), out["user_code"].(string)
}

// tokenForm posts a form to an endpoint of the authorization server and
// decodes the JSON answer.
func (w *homeWorld) tokenForm(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := w.r.client.PostForm(w.r.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// allow has user enter the code at /device and press Allow.
func (w *homeWorld) allow(t *testing.T, user, userCode string) pageResponse {
	t.Helper()
	p := (&umaWorld{r: w.r}).pageClient(t, user)
	csrf := p.formToken("/device?user_code=" + url.QueryEscape(userCode))
	if r := p.post("/device", url.Values{"csrf": {csrf}, "user_code": {userCode}}); r.status != 200 || !strings.Contains(r.body, `id="allow"`) {
		t.Fatalf("%s enters the code: %d %.400s", user, r.status, r.body)
	}
	return p.post("/device/decision", url.Values{"csrf": {csrf}, "user_code": {userCode}, "decision": {"allow"}})
}

// A dependant pairs a thing, and the thing gets tokens for them, only as
// the household's rules allow, on the households' clock; the refusal says
// why, on the page and in error_description, and is audited.
func TestHouseholdRulesAtTheAuthorizationServer(t *testing.T) {
	w := newHomeWorld(t)
	ctx := context.Background()
	hh, room := w.family(t)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	monday := func(hour, minute int) time.Time { return time.Date(2025, 3, 17, hour, minute, 0, 0, berlin) }
	w.clock.set(monday(19, 58))

	// Mum's speaker, in the kids' room: no rule lets Emma pair it.
	deviceCode, userCode := w.deviceStart(t, w.speakerApp)
	r := w.allow(t, "emma", userCode)
	if r.status != 403 || !strings.Contains(r.body, "no rule allows Emma to pair Kids&#39; speaker") {
		t.Fatalf("pairing without a rule: %d %.600s", r.status, r.body)
	}
	if code, out := w.tokenForm(t, "/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {w.speakerApp}, "device_code": {deviceCode}}); code != 400 || out["error"] != "authorization_pending" {
		t.Fatalf("the refused code: %d %v", code, out)
	}
	rules := `{"rules":[{"id":"emma-evening","effect":"allow","who":{"kind":"member","member":"` + w.emma.ID + `"},"things":{"kind":"room","id":"` + room +
		`"},"actions":["pair","use"],"when":{"days":["mon","tue","wed","thu","fri"],"start":"07:00","end":"20:00"}}]}`
	w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/rules", rules)
	// The code stayed pending: Allow works once the rules allow it.
	if r := w.allow(t, "emma", userCode); r.status != 200 || !strings.Contains(r.body, "Device connected") {
		t.Fatalf("pairing at 19:58: %d %.600s", r.status, r.body)
	}
	exchange := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {w.speakerApp}, "device_code": {deviceCode}}
	// The window closes between the approval and the exchange: the code
	// waits for the next one.
	w.clock.set(monday(20, 1))
	code, out := w.tokenForm(t, "/oauth2/token", exchange)
	const outside = "outside the allowed times: Emma may pair or use the things in Kids' room from 07:00 to 20:00 on school days"
	if code != 400 || out["error"] != "access_denied" || !strings.Contains(out["error_description"].(string), outside) {
		t.Fatalf("exchange at 20:01: %d %v", code, out)
	}
	w.clock.set(monday(19, 59))
	code, out = w.tokenForm(t, "/oauth2/token", exchange)
	if code != 200 {
		t.Fatalf("exchange at 19:59: %d %v", code, out)
	}
	if claims := payload(t, out["access_token"].(string)); claims["sub"] != w.emma.ID || claims["thing"] != w.speaker.ID {
		t.Fatalf("the speaker's token: %v", claims)
	}
	// Mum still owns the speaker.
	owners, _ := w.r.p.Store.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: w.speaker.ID}})
	if len(owners) != 1 || owners[0].From.ID != w.mum.ID {
		t.Fatalf("owners: %+v", owners)
	}

	// Refresh follows the window; a refusal does not use the token up.
	refresh := func(tok string) (int, map[string]any) {
		return w.tokenForm(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {w.speakerApp}, "refresh_token": {tok}})
	}
	rt := out["refresh_token"].(string)
	w.clock.set(monday(20, 1))
	if code, out := refresh(rt); code != 400 || out["error"] != "access_denied" || !strings.Contains(out["error_description"].(string), outside) {
		t.Fatalf("refresh at 20:01: %d %v", code, out)
	}
	w.clock.set(monday(19, 59).AddDate(0, 0, 1).Add(-13 * time.Hour)) // Tuesday 07:00 … 06:59
	if code, out := refresh(rt); code != 400 || out["error"] != "access_denied" {
		t.Fatalf("refresh at 06:59: %d %v", code, out)
	}
	w.clock.set(time.Date(2025, 3, 18, 7, 1, 0, 0, berlin))
	code, out = refresh(rt)
	if code != 200 {
		t.Fatalf("refresh on Tuesday at 07:01: %d %v", code, out)
	}
	rt = out["refresh_token"].(string)

	// Every refusal is audited with its rule, at this door.
	recs, _ := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: w.speaker.ID}, Limit: 100})
	var oauthDenials []string
	for _, rec := range recs {
		if rec.Action == "policy.deny" && strings.Contains(string(rec.Detail), `"door":"oauth"`) {
			oauthDenials = append(oauthDenials, string(rec.Detail))
		}
	}
	if len(oauthDenials) < 3 || !strings.Contains(oauthDenials[0], `"rule":"default"`) || !strings.Contains(oauthDenials[1], `"rule":"emma-evening"`) {
		t.Fatalf("audited refusals: %v", oauthDenials)
	}

	// A new device: a dependant's pairing is the household's to decide, as
	// if the device were its own; a guest's is not.
	_, tabletCode := w.deviceStart(t, w.tabletApp)
	if r := w.allow(t, "emma", tabletCode); r.status != 403 || !strings.Contains(r.body, "no rule allows Emma to pair Tablet") {
		t.Fatalf("emma pairs a new tablet: %d %.600s", r.status, r.body)
	}
	if r := w.allow(t, "gran", tabletCode); r.status != 200 {
		t.Fatalf("gran pairs the tablet: %d %.600s", r.status, r.body)
	}

	// Once Emma leaves the household, mum's speaker no longer acts for her.
	w.must(t, w.mumC, 204, "DELETE", "/api/v1/households/"+hh+"/members/"+w.emma.ID, "")
	if code, out := refresh(rt); code != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("refresh after leaving: %d %v", code, out)
	}
}
