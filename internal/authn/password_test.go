package authn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

func (e *env) changePasswordJSON(t testing.TB, c *http.Client, current, next string, header ...string) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(passwordChange{CurrentPassword: current, NewPassword: next})
	return e.request(t, c, http.MethodPost, "/api/v1/password", string(b), append([]string{"Content-Type", "application/json"}, header...)...)
}

func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, inDetail string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if p := decodeProblem(t, resp, body); !strings.Contains(p.Detail, inDetail) {
		t.Fatalf("detail %q does not mention %q", p.Detail, inDetail)
	}
}

func TestChangeOwnPassword(t *testing.T) {
	e := newEnv(t, testOptions())
	const newPassword = "a brand new passphrase for alice"
	other := e.client()
	if resp, body := e.signinJSON(t, other, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("second sign-in: %d %s", resp.StatusCode, body)
	}
	c := e.client()
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}

	// Not signed in, cross-site and wrong media type are refused.
	resp, body := e.changePasswordJSON(t, e.client(), alicePassword, newPassword)
	wantProblem(t, resp, body, http.StatusUnauthorized, "sign in")
	resp, body = e.changePasswordJSON(t, c, alicePassword, newPassword, "Sec-Fetch-Site", "cross-site")
	wantProblem(t, resp, body, http.StatusForbidden, "cross-origin")
	resp, body = e.request(t, c, http.MethodPost, "/api/v1/password", `{"currentPassword":"x","newPassword":"y"}`, "Content-Type", "text/plain")
	wantProblem(t, resp, body, http.StatusUnsupportedMediaType, "application/json")
	resp, body = e.request(t, c, http.MethodPost, "/api/v1/password", `{"currentPassword":"x","password":"y"}`, "Content-Type", "application/json")
	wantProblem(t, resp, body, http.StatusBadRequest, "newPassword")

	resp, body = e.changePasswordJSON(t, c, "not alice's password", newPassword)
	wantProblem(t, resp, body, http.StatusBadRequest, "currentPassword")
	resp, body = e.changePasswordJSON(t, c, alicePassword, "")
	wantProblem(t, resp, body, http.StatusBadRequest, "newPassword")
	resp, body = e.changePasswordJSON(t, c, alicePassword, "short")
	wantProblem(t, resp, body, http.StatusUnprocessableEntity, "newPassword")
	resp, body = e.changePasswordJSON(t, c, alicePassword, alicePassword)
	wantProblem(t, resp, body, http.StatusUnprocessableEntity, "newPassword")

	resp, body = e.changePasswordJSON(t, c, alicePassword, newPassword)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("change: %d %s", resp.StatusCode, body)
	}
	// This session goes on; the other one, which may be the attacker's, is over.
	if status, list := e.listOwn(t, c); status != http.StatusOK || len(list) != 1 || !list[0].Current {
		t.Fatalf("own sessions after the change: %d %+v", status, list)
	}
	if status, _ := e.listOwn(t, other); status != http.StatusUnauthorized {
		t.Fatalf("the other session after the change: %d, want 401", status)
	}
	if resp, _ := e.signinJSON(t, e.client(), "alice", alicePassword); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old password: %d, want 401", resp.StatusCode)
	}
	if resp, body := e.signinJSON(t, e.client(), "alice", newPassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("new password: %d %s", resp.StatusCode, body)
	}
	recs, _ := e.store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindUser, ID: e.alice.ID}})
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"user.password-failed", "user.password", "session.terminate-others"} {
		if !strings.Contains(","+strings.Join(actions, ",")+",", ","+want+",") {
			t.Errorf("audit %v lacks %s", actions, want)
		}
	}
}

func TestWrongCurrentPasswordIsThrottled(t *testing.T) {
	opts := testOptions()
	opts.FreeFailures = 2
	e := newEnv(t, opts)
	c := e.client()
	e.signinJSON(t, c, "alice", alicePassword)
	for range 2 {
		resp, body := e.changePasswordJSON(t, c, "guess", "a brand new passphrase for alice")
		wantProblem(t, resp, body, http.StatusBadRequest, "currentPassword")
	}
	// Now even the right password waits: a session is no guessing oracle.
	resp, body := e.changePasswordJSON(t, c, alicePassword, "a brand new passphrase for alice")
	wantProblem(t, resp, body, http.StatusTooManyRequests, "currentPassword")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

// mustChange marks alice as holding a one-time password.
func (e *env) mustChange(t *testing.T) {
	t.Helper()
	if _, err := e.ids.UpdateUser(context.Background(), "test", e.alice.ID, 0, func(u *store.User) error {
		u.MustChangePassword = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestMustChangePasswordConfinesTheSession(t *testing.T) {
	e := newEnv(t, testOptions())
	e.mustChange(t)
	c := e.client()

	// The form sign-in goes to the password page, keeping return_to.
	tok := e.formToken(t, c, "/signin")
	resp, page := e.postForm(t, c, "/signin", url.Values{
		"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}, "return_to": {"/account?tab=sessions"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account/password?return_to=%2Faccount%3Ftab%3Dsessions" {
		t.Fatalf("sign-in: %d to %q:\n%s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	for _, tc := range []struct{ path, to string }{
		{"/account", "/account/password?return_to=%2Faccount"},
		{"/signin?return_to=/account/grants", "/account/password?return_to=%2Faccount%2Fgrants"},
	} {
		resp, _ := e.request(t, c, http.MethodGet, tc.path, "")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tc.to {
			t.Errorf("GET %s: %d to %q, want 303 to %s", tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.to)
		}
	}
	resp, body := e.request(t, c, http.MethodGet, "/api/v1/sessions", "")
	wantProblem(t, resp, body, http.StatusForbidden, "password change required")
	resp, body = e.request(t, c, http.MethodDelete, "/api/v1/sessions/0011223344556677", "")
	wantProblem(t, resp, body, http.StatusForbidden, "password change required")
	if _, err := e.s.User(httptestRequest(e, c)); err != ErrPasswordChangeRequired {
		t.Errorf("Sessions.User = %v, want ErrPasswordChangeRequired", err)
	}
	resp, body = e.signinJSON(t, e.client(), "alice", alicePassword)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"mustChangePassword":true`) {
		t.Errorf("JSON sign-in: %d %s, want mustChangePassword", resp.StatusCode, body)
	}

	// The page: CSRF is required, errors name the field, success lands on return_to.
	tok = e.formToken(t, c, "/account/password?return_to=/account%3Ftab%3Dsessions")
	resp, page = e.postForm(t, c, "/account/password", url.Values{
		"csrf": {"forged"}, "currentPassword": {alicePassword}, "newPassword": {"alice's very own passphrase"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged CSRF: %d\n%s", resp.StatusCode, page)
	}
	resp, page = e.postForm(t, c, "/account/password", url.Values{
		"csrf": {tok}, "currentPassword": {alicePassword}, "newPassword": {"short"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, `id="newPassword" name="newPassword" type="password" autocomplete="new-password" required aria-invalid="true"`) {
		t.Fatalf("weak password: %d\n%s", resp.StatusCode, page)
	}
	// The policy's advice, with its arguments, in the page's language.
	resp, page = e.postForm(t, c, "/account/password", url.Values{
		"csrf": {tok}, "currentPassword": {alicePassword}, "newPassword": {"short"}}, "Accept-Language", "de")
	if resp.StatusCode != http.StatusUnprocessableEntity || !regexp.MustCompile(`<h2 id="summary-title">verwenden Sie mindestens \d+ Zeichen`).MatchString(page) {
		t.Fatalf("weak password in German: %d\n%s", resp.StatusCode, page)
	}
	resp, page = e.postForm(t, c, "/account/password", url.Values{
		"csrf": {tok}, "currentPassword": {alicePassword}, "newPassword": {"alice's very own passphrase"},
		"return_to": {"/account?tab=sessions"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account?tab=sessions" {
		t.Fatalf("change: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	if u, _ := e.ids.GetUser(context.Background(), e.alice.ID); u.MustChangePassword {
		t.Fatal("MustChangePassword still set")
	}
	resp, body = e.request(t, c, http.MethodGet, "/account", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Signed in as alice") {
		t.Fatalf("account page after the change: %d\n%s", resp.StatusCode, body)
	}
	if status, list := e.listOwn(t, c); status != http.StatusOK || len(list) != 1 {
		t.Fatalf("sessions after the change: %d %+v", status, list)
	}
}

// httptestRequest is a request carrying c's cookies, for calling Sessions directly.
func httptestRequest(e *env, c *http.Client) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
	u, _ := url.Parse(e.srv.URL)
	for _, ck := range c.Jar.Cookies(u) {
		r.AddCookie(ck)
	}
	return r
}

func TestAdminWhoMustChangePasswordIsRefused(t *testing.T) {
	e := newEnv(t, testOptions())
	ctx := context.Background()
	root, err := e.ids.GetUserByName(ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	const rootPassword = "root's one-time passphrase"
	h, err := e.ids.HashPassword(rootPassword, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ids.UpdateUser(ctx, "test", root.ID, 0, func(u *store.User) error {
		u.PasswordHash, u.MustChangePassword = h, true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/admin/users/" + e.alice.ID + "/sessions"
	basic := func(pw string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
		req.SetBasicAuth("root", pw)
		return do(t, e.srv.Client(), req)
	}
	resp, body := basic(rootPassword)
	wantProblem(t, resp, body, http.StatusUnauthorized, "/signin")
	// A wrong password learns nothing about the one-time password.
	resp, body = basic("wrong")
	wantProblem(t, resp, body, http.StatusUnauthorized, "administrator credentials required")
	resp, body = e.request(t, e.srv.Client(), http.MethodGet, path, "", "Authorization", "Bearer "+e.adminToken)
	wantProblem(t, resp, body, http.StatusUnauthorized, "password change required")

	c := e.client()
	if resp, body := e.signinJSON(t, c, "root", rootPassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("root sign-in: %d %s", resp.StatusCode, body)
	}
	const newPassword = "root's own passphrase now"
	if resp, body := e.changePasswordJSON(t, c, rootPassword, newPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("change: %d %s", resp.StatusCode, body)
	}
	if resp, body := basic(newPassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("Basic after the change: %d %s", resp.StatusCode, body)
	}
	if resp, body := basic(rootPassword); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Basic with the one-time password after the change: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.request(t, e.srv.Client(), http.MethodGet, path, "", "Authorization", "Bearer "+e.adminToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("token after the change: %d %s", resp.StatusCode, body)
	}
}
