package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// signedIn returns a browser signed in as user.
func (e *env) signedIn(t testing.TB, user, pw string) *http.Client {
	t.Helper()
	b := e.browser()
	e.signIn(t, b, user, pw)
	return b
}

// devicesOf decodes GET path (a device list).
func (e *env) devicesOf(t testing.TB, c *http.Client, path string, header ...string) []deviceView {
	t.Helper()
	resp, body := e.do(t, c, http.MethodGet, path, "", "", header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var v struct{ Devices []deviceView }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	return v.Devices
}

func (e *env) owners(t testing.TB, thingID string) []store.Relationship {
	t.Helper()
	to := store.Ref{Kind: store.KindThing, ID: thingID}
	rels, err := e.st.ListRelationships(context.Background(), store.RelFilter{Kind: store.RelOwner, To: &to})
	if err != nil {
		t.Fatal(err)
	}
	return rels
}

// TestUnlinkResale is story step 7: alice pairs the speaker, sees it, unlinks
// it; everything the speaker holds stops working at once and bob can pair it.
func TestUnlinkResale(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c)
	if _, err := e.verify(tr.AccessToken); err != nil {
		t.Fatalf("access token before unlink: %v", err)
	}
	// The device used its grant: refresh once (LastUsed) and keep the new pair.
	resp, body, tr2 := e.refresh(t, c.ID, tr.RefreshToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}

	alice := e.signedIn(t, "alice", alicePassword)
	ds := e.devicesOf(t, alice, "/api/v1/devices")
	if len(ds) != 1 || ds[0].ID != e.speaker.ID || ds[0].DisplayName != "Living room speaker" || ds[0].Model != "Speaker-1" ||
		ds[0].SerialNumber != "SN-0001" || ds[0].LinkedSince.IsZero() || ds[0].LastUsed == nil {
		t.Fatalf("devices: %+v", ds)
	}
	claims, err := e.verify(tr2.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	grantID := claims.GrantID

	resp, body = e.do(t, alice, http.MethodDelete, "/api/v1/devices/"+e.speaker.ID, "", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("unlink: %d %s", resp.StatusCode, body)
	}

	// Every token the speaker holds is dead, at once.
	if _, err := e.verify(tr2.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("access token after unlink: %v, want ErrRevoked", err)
	}
	if resp, body, _ := e.refresh(t, c.ID, tr2.RefreshToken); resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Errorf("refresh after unlink: %d %s", resp.StatusCode, body)
	}
	g, err := e.st.GetGrant(context.Background(), grantID)
	if err != nil || g.RevokedAt.IsZero() {
		t.Errorf("grant after unlink: %+v %v", g, err)
	}
	if rels := e.owners(t, e.speaker.ID); len(rels) != 0 {
		t.Errorf("owner relationship left: %+v", rels)
	}
	if ds := e.devicesOf(t, alice, "/api/v1/devices"); len(ds) != 0 {
		t.Errorf("devices after unlink: %+v", ds)
	}
	revs := e.eventsOf(tokens.EventGrantRevoke)
	if len(revs) != 1 || revs[0].ID != grantID || revs[0].Details["exp"] == "" {
		t.Errorf("grant.revoke events: %+v", revs)
	}
	if len(e.eventsOf("relationship.remove")) != 1 {
		t.Errorf("relationship.remove events: %+v", e.eventsOf("relationship.remove"))
	}
	recs, err := e.st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
	if err != nil {
		t.Fatal(err)
	}
	var audited bool
	for _, r := range recs {
		if r.Action == "thing.unlink" && r.Actor == "user:"+e.alice.ID && strings.Contains(string(r.Detail), grantID) {
			audited = true
		}
	}
	if !audited {
		t.Errorf("no thing.unlink audit record: %+v", recs)
	}

	// Unlinking again is a 404, not a silent success.
	if resp, body := e.do(t, alice, http.MethodDelete, "/api/v1/devices/"+e.speaker.ID, "", ""); resp.StatusCode != http.StatusNotFound ||
		!strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
		t.Errorf("second unlink: %d %s", resp.StatusCode, body)
	}

	// Resale: bob pairs the same speaker and owns it.
	d := e.startDevice(t, c.ID)
	e.approve(t, d.UserCode, e.bob, bobPassword)
	if resp, body := e.pollDevice(t, c.ID, d.DeviceCode); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob pairing: %d %s", resp.StatusCode, body)
	}
	if rels := e.owners(t, e.speaker.ID); len(rels) != 1 || rels[0].From.ID != e.bob.ID {
		t.Errorf("owners after resale: %+v", rels)
	}
	// The old grant stays dead after the new pairing.
	if _, err := e.verify(tr2.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("alice's access token after resale: %v", err)
	}
}

// TestUnlinkApprovedButUnclaimedCode: a code alice approved but the device had
// not exchanged yet yields nothing after unlinking.
func TestUnlinkApprovedButUnclaimedCode(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	d := e.startDevice(t, c.ID)
	e.approve(t, d.UserCode, e.alice, alicePassword)
	// A grant of the speaker's client that does not name the thing goes too;
	// another user's grant of the same client stays.
	ctx := context.Background()
	viaClient := &store.Grant{UserID: e.alice.ID, ClientID: c.ID, Scopes: []string{"speaker:play"}, Created: time.Now()}
	bobs := &store.Grant{UserID: e.bob.ID, ClientID: c.ID, Scopes: []string{"speaker:play"}, Created: time.Now()}
	for _, g := range []*store.Grant{viaClient, bobs} {
		if err := e.st.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.Unlink(ctx, "test", e.alice.ID, e.speaker.ID); err != nil {
		t.Fatal(err)
	}
	if g, err := e.st.GetGrant(ctx, viaClient.ID); err != nil || g.RevokedAt.IsZero() {
		t.Errorf("grant of the thing's client left: %+v %v", g, err)
	}
	if g, err := e.st.GetGrant(ctx, bobs.ID); err != nil || !g.RevokedAt.IsZero() {
		t.Errorf("bob's grant touched: %+v %v", g, err)
	}
	if n := len(e.eventsOf(tokens.EventGrantRevoke)); n != 2 {
		t.Errorf("%d grant.revoke events, want 2", n)
	}
	if resp, body := e.pollDevice(t, c.ID, d.DeviceCode); resp.StatusCode == http.StatusOK {
		t.Fatalf("device got tokens after unlink: %s", body)
	}
}

func TestDevicesPage(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c)

	// Not signed in: sent to sign in and back.
	resp, _ := e.do(t, e.browser(), http.MethodGet, "/account/devices", "", "")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/signin?return_to="+url.QueryEscape("/account/devices") {
		t.Fatalf("anonymous: %d %s", resp.StatusCode, loc)
	}

	alice := e.signedIn(t, "alice", alicePassword)
	resp, page := e.do(t, alice, http.MethodGet, "/account/devices", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Living room speaker") || !strings.Contains(page, "SN-0001") {
		t.Fatalf("page: %d %s", resp.StatusCode, page)
	}
	action := "/account/devices/" + e.speaker.ID + "/unlink"
	if !strings.Contains(page, `action="`+action+`"`) {
		t.Fatalf("no unlink form:\n%s", page)
	}
	csrf := csrfOf(t, page)

	// Without or with a wrong CSRF token, and cross-site: refused, still linked.
	for name, try := range map[string]func() (*http.Response, string){
		"no csrf":  func() (*http.Response, string) { return e.post(t, alice, action, url.Values{}) },
		"bad csrf": func() (*http.Response, string) { return e.post(t, alice, action, url.Values{"csrf": {csrf + "x"}}) },
		"cross-site": func() (*http.Response, string) {
			return e.post(t, alice, action, url.Values{"csrf": {csrf}}, "Sec-Fetch-Site", "cross-site")
		},
		"bad origin": func() (*http.Response, string) {
			return e.post(t, alice, action, url.Values{"csrf": {csrf}}, "Origin", "https://evil.example")
		},
	} {
		if resp, body := try(); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	if len(e.owners(t, e.speaker.ID)) != 1 {
		t.Fatal("a refused form unlinked the device")
	}
	// Bob's browser with bob's own valid CSRF token (from a page of his that
	// has a form) cannot unlink alice's device.
	bob := e.signedIn(t, "bob", bobPassword)
	_, bobPage := e.do(t, bob, http.MethodGet, "/device", "", "")
	if resp, body := e.post(t, bob, action, url.Values{"csrf": {csrfOf(t, bobPage)}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob unlinking alice's device: %d %s", resp.StatusCode, body)
	}

	resp, body := e.post(t, alice, action, url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/devices?done=unlinked" {
		t.Fatalf("unlink form: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("access token after unlink: %v", err)
	}
	_, page = e.do(t, alice, http.MethodGet, "/account/devices?done=unlinked", "", "")
	if strings.Contains(page, "SN-0001") || !strings.Contains(page, "Device unlinked") {
		t.Errorf("page after unlink:\n%s", page)
	}
}

func TestDevicesAPIAttacks(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	tr := e.pair(t, c) // alice's speaker
	bob := e.signedIn(t, "bob", bobPassword)
	alice := e.signedIn(t, "alice", alicePassword)
	admin := []string{"Authorization", "Bearer " + e.adminToken}

	if ds := e.devicesOf(t, bob, "/api/v1/devices"); len(ds) != 0 {
		t.Errorf("bob sees devices: %+v", ds)
	}
	cases := []struct {
		name           string
		c              *http.Client
		method, path   string
		header         []string
		want           int
		stillLinkedNow bool
	}{
		{"anonymous list", e.browser(), "GET", "/api/v1/devices", nil, 401, true},
		{"anonymous unlink", e.browser(), "DELETE", "/api/v1/devices/" + e.speaker.ID, nil, 401, true},
		{"bob unlinks alice's", bob, "DELETE", "/api/v1/devices/" + e.speaker.ID, nil, 404, true},
		{"bob on admin list", bob, "GET", "/api/v1/admin/users/" + e.alice.ID + "/devices", nil, 401, true},
		{"alice on admin list", alice, "GET", "/api/v1/admin/users/" + e.alice.ID + "/devices", nil, 401, true},
		{"bob on admin unlink", bob, "DELETE", "/api/v1/admin/users/" + e.alice.ID + "/devices/" + e.speaker.ID, nil, 401, true},
		{"cross-site unlink", alice, "DELETE", "/api/v1/devices/" + e.speaker.ID, []string{"Sec-Fetch-Site", "cross-site"}, 403, true},
		{"foreign origin unlink", alice, "DELETE", "/api/v1/devices/" + e.speaker.ID, []string{"Origin", "https://evil.example"}, 403, true},
		{"cross-site admin unlink", e.srv.Client(), "DELETE", "/api/v1/admin/users/" + e.alice.ID + "/devices/" + e.speaker.ID,
			append([]string{"Sec-Fetch-Site", "cross-site"}, admin...), 403, true},
		{"admin, unknown user", e.srv.Client(), "GET", "/api/v1/admin/users/nobody/devices", admin, 404, true},
		{"admin, wrong user", e.srv.Client(), "DELETE", "/api/v1/admin/users/" + e.bob.ID + "/devices/" + e.speaker.ID, admin, 404, true},
	}
	for _, tc := range cases {
		resp, body := e.do(t, tc.c, tc.method, tc.path, "", "", tc.header...)
		if resp.StatusCode != tc.want || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
			t.Errorf("%s: %d %s (want %d, problem details)", tc.name, resp.StatusCode, body, tc.want)
		}
		if tc.stillLinkedNow && len(e.owners(t, e.speaker.ID)) != 1 {
			t.Fatalf("%s unlinked the device", tc.name)
		}
	}
	if _, err := e.verify(tr.AccessToken); err != nil {
		t.Fatalf("a refused request revoked the token: %v", err)
	}

	// Support acts on alice's behalf.
	ds := e.devicesOf(t, e.srv.Client(), "/api/v1/admin/users/"+e.alice.ID+"/devices", admin...)
	if len(ds) != 1 || ds[0].ID != e.speaker.ID {
		t.Fatalf("admin list: %+v", ds)
	}
	resp, body := e.do(t, e.srv.Client(), http.MethodDelete, "/api/v1/admin/users/"+e.alice.ID+"/devices/"+e.speaker.ID, "", "", admin...)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("admin unlink: %d %s", resp.StatusCode, body)
	}
	if _, err := e.verify(tr.AccessToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("access token after admin unlink: %v", err)
	}
	if revs := e.eventsOf(tokens.EventGrantRevoke); len(revs) != 1 || !strings.HasPrefix(revs[0].Actor, "admin:") {
		t.Errorf("grant.revoke events: %+v", revs)
	}
}
