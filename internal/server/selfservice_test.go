package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

// TestDeleteAccountRevokesLive: a user deletes the account through the
// JSON API of the running platform; the tablet they paired loses its tokens
// at once (the authorization server's revocation), the thing is unlinked
// but stays, and the user's sessions end.
func TestDeleteAccountRevokesLive(t *testing.T) {
	w := newHomeWorld(t)
	ctx := context.Background()
	deviceCode, userCode := w.deviceStart(t, w.tabletApp)
	if r := w.allow(t, "gran", userCode); r.status != 200 {
		t.Fatalf("gran pairs the tablet: %d %.400s", r.status, r.body)
	}
	code, out := w.tokenForm(t, "/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {w.tabletApp}, "device_code": {deviceCode}})
	if code != 200 {
		t.Fatalf("tablet token: %d %v", code, out)
	}
	rt, _ := out["refresh_token"].(string)
	if owners, _ := w.r.p.Store.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: w.tablet.ID}}); len(owners) != 1 {
		t.Fatalf("the tablet has owners %v, want gran", owners)
	}

	gran := (&umaWorld{r: w.r}).pageClient(t, "gran")
	req, _ := http.NewRequest(http.MethodDelete, w.r.base+"/api/v1/account", strings.NewReader(`{"password":"`+umaPW+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if r := gran.do(req); r.status != http.StatusNoContent {
		t.Fatalf("deleting gran's account: %d %s", r.status, r.body)
	}
	if code, out := w.tokenForm(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {w.tabletApp}, "refresh_token": {rt}}); code != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("the tablet refreshes after the deletion: %d %v", code, out)
	}
	grants, _ := w.r.p.Store.ListGrants(ctx, store.GrantFilter{UserID: w.gran.ID})
	if len(grants) != 0 {
		t.Fatalf("gran keeps live grants %v", grants)
	}
	if _, err := w.r.p.Store.GetThing(ctx, w.tablet.ID); err != nil {
		t.Fatalf("the tablet went with the account: %v", err)
	}
	if owners, _ := w.r.p.Store.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: w.tablet.ID}}); len(owners) != 0 {
		t.Fatalf("the tablet keeps owners %v", owners)
	}
	recs, _ := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Actor: store.TextMatch{Value: "user:" + w.gran.ID}})
	actions := map[string]bool{}
	for _, r := range recs {
		actions[r.Action] = true
	}
	for _, want := range []string{"thing.unlink", "user.delete"} {
		if !actions[want] {
			t.Errorf("no %s record by gran: %v", want, actions)
		}
	}
	req, _ = http.NewRequest(http.MethodGet, w.r.base+"/api/v1/account/data", nil)
	if r := gran.do(req); r.status != http.StatusUnauthorized {
		t.Fatalf("gran's session after the deletion: %d, want 401", r.status)
	}
}

// TestForgotPasswordIsServed: the sign-in page links to password recovery,
// which is served (with mail to the outbox) whether or not registration is
// open, and answers alike for anyone.
func TestForgotPasswordIsServed(t *testing.T) {
	r := serve(t, func(c *config.Config) { c.Registration.Enabled = false })
	if code, body := r.get(t, "/signin", nil); code != 200 || !strings.Contains(body, `href="/password/forgot"`) {
		t.Fatalf("sign-in page: %d, want a link to /password/forgot", code)
	}
	if code, _ := r.get(t, "/password/forgot", nil); code != 200 {
		t.Fatalf("forgot password page: %d", code)
	}
	if code, body := r.post(t, "/api/v1/password/forgot", `{"account":"nobody"}`); code != http.StatusAccepted {
		t.Fatalf("forgot password API: %d %s", code, body)
	}
	if code, _ := r.get(t, "/register", nil); code != 404 {
		t.Fatalf("registration closed: %d, want 404", code)
	}
}
