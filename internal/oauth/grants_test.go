package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/tokens"
)

func (e *env) grantsOf(t testing.TB, c *http.Client, path string, header ...string) []grantView {
	t.Helper()
	resp, body := e.do(t, c, http.MethodGet, path, "", "", header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var v struct{ Grants []grantView }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	return v.Grants
}

func TestGrantsListAndRevoke(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c)
	alice := e.signedIn(t, "alice", alicePassword)
	bob := e.signedIn(t, "bob", bobPassword)

	gs := e.grantsOf(t, alice, "/api/v1/grants")
	if len(gs) != 1 || gs[0].ClientID != c.ID || gs[0].ClientName != "Acme Speaker app" || gs[0].ThingID != e.speaker.ID ||
		len(gs[0].Scopes) == 0 || gs[0].Created.IsZero() || gs[0].RevokedAt != nil {
		t.Fatalf("grants: %+v", gs)
	}
	id := gs[0].ID
	if gs := e.grantsOf(t, bob, "/api/v1/grants"); len(gs) != 0 {
		t.Fatalf("bob sees grants: %+v", gs)
	}
	for name, tc := range map[string]struct {
		c      *http.Client
		method string
		path   string
		header []string
		want   int
	}{
		"anonymous":        {e.browser(), "DELETE", "/api/v1/grants/" + id, nil, 401},
		"bob revokes":      {bob, "DELETE", "/api/v1/grants/" + id, nil, 404},
		"unknown":          {alice, "DELETE", "/api/v1/grants/nope", nil, 404},
		"cross-site":       {alice, "DELETE", "/api/v1/grants/" + id, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		"bad query":        {alice, "GET", "/api/v1/grants?includeRevoked=maybe", nil, 400},
		"bob admin list":   {bob, "GET", "/api/v1/admin/users/" + e.alice.ID + "/grants", nil, 401},
		"bob admin revoke": {bob, "DELETE", "/api/v1/admin/users/" + e.alice.ID + "/grants/" + id, nil, 401},
		"admin wrong user": {e.srv.Client(), "DELETE", "/api/v1/admin/users/" + e.bob.ID + "/grants/" + id,
			[]string{"Authorization", "Bearer " + e.adminToken}, 404},
	} {
		resp, body := e.do(t, tc.c, tc.method, tc.path, "", "", tc.header...)
		if resp.StatusCode != tc.want || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
			t.Errorf("%s: %d %s (want %d)", name, resp.StatusCode, body, tc.want)
		}
	}
	if _, err := e.verify(tr.AccessToken); err != nil {
		t.Fatalf("a refused request revoked the grant: %v", err)
	}
	admin := []string{"Authorization", "Bearer " + e.adminToken}
	if gs := e.grantsOf(t, e.srv.Client(), "/api/v1/admin/users/"+e.alice.ID+"/grants", admin...); len(gs) != 1 || gs[0].ID != id {
		t.Fatalf("admin list: %+v", gs)
	}

	resp, body := e.do(t, alice, http.MethodDelete, "/api/v1/grants/"+id, "", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("access token after revoke: %v", err)
	}
	if resp, body, _ := e.refresh(t, c.ID, tr.RefreshToken); resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Errorf("refresh after revoke: %d %s", resp.StatusCode, body)
	}
	if revs := e.eventsOf(tokens.EventGrantRevoke); len(revs) != 1 || revs[0].ID != id {
		t.Errorf("events: %+v", revs)
	}
	if gs := e.grantsOf(t, alice, "/api/v1/grants"); len(gs) != 0 {
		t.Errorf("active grants after revoke: %+v", gs)
	}
	if gs := e.grantsOf(t, alice, "/api/v1/grants?includeRevoked=true"); len(gs) != 1 || gs[0].RevokedAt == nil {
		t.Errorf("revoked grant not shown revoked: %+v", gs)
	}
	if resp, _ := e.do(t, alice, http.MethodDelete, "/api/v1/grants/"+id, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second revoke: %d", resp.StatusCode)
	}
	// Revoking the grant does not unlink the device: ownership is separate.
	if len(e.owners(t, e.speaker.ID)) != 1 {
		t.Errorf("revoking a grant removed the owner link")
	}
}

func TestGrantsPage(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c)

	resp, _ := e.do(t, e.browser(), http.MethodGet, "/account/grants", "", "")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?return_to=") {
		t.Fatalf("anonymous: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	alice := e.signedIn(t, "alice", alicePassword)
	resp, page := e.do(t, alice, http.MethodGet, "/account/grants", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Acme Speaker app") || !strings.Contains(page, "speaker:play") {
		t.Fatalf("page: %d %s", resp.StatusCode, page)
	}
	claims, err := e.verify(tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	action := "/account/grants/" + claims.GrantID + "/revoke"
	if !strings.Contains(page, `action="`+action+`"`) {
		t.Fatalf("no revoke form:\n%s", page)
	}
	csrf := csrfOf(t, page)
	if resp, body := e.post(t, alice, action, url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("no csrf: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.post(t, alice, action, url.Values{"csrf": {csrf}}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); err != nil {
		t.Fatalf("a refused form revoked the grant: %v", err)
	}
	resp, body := e.post(t, alice, action, url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke form: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("access token after revoke: %v", err)
	}
	if resp, _ := e.post(t, alice, action, url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second revoke: %d", resp.StatusCode)
	}
}
