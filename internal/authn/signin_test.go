package authn

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

func TestSignInJSONSetsASecureCookie(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	resp, body := e.signinJSON(t, c, "Alice", alicePassword) // names are case-insensitive
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	var got struct{ UserID string }
	if err := json.Unmarshal(body, &got); err != nil || got.UserID != e.alice.ID {
		t.Fatalf("body %s (%v), want alice's userId", body, err)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v, want exactly the session cookie", cookies)
	}
	ck := cookies[0]
	if ck.Name != "__Host-thingid-session" || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode ||
		ck.Path != "/" || ck.Domain != "" || ck.MaxAge != 0 || !ck.Expires.IsZero() {
		t.Fatalf("cookie %+v, want __Host-thingid-session; Secure; HttpOnly; SameSite=Lax; Path=/; no Domain; no expiry", ck)
	}
	raw, err := b64.DecodeString(ck.Value)
	if err != nil || len(raw) != 32 {
		t.Fatalf("cookie value %q: want 32 random bytes in base64url (%v)", ck.Value, err)
	}
	// Only the keyed hash is stored.
	ctx := context.Background()
	if _, err := e.s.st.GetSession(ctx, raw); err == nil {
		t.Fatal("the session is stored under the cookie value itself")
	}
	sess, err := e.s.st.GetSession(ctx, e.s.hash(raw))
	if err != nil || sess.UserID != e.alice.ID || sess.RemoteIP != "127.0.0.1" || !strings.HasPrefix(sess.UserAgent, "Go-http-client") {
		t.Fatalf("stored session %+v (%v)", sess, err)
	}
	status, list := e.listOwn(t, c)
	if status != http.StatusOK || len(list) != 1 || !list[0].Current || list[0].ID != publicID(sess.Hash) || list[0].RemoteIP != "127.0.0.1" {
		t.Fatalf("own sessions: %d %+v", status, list)
	}
	if strings.Contains(list[0].ID, ck.Value) || len(list[0].ID) != 16 {
		t.Fatalf("session id %q must be a short hash prefix, not the cookie", list[0].ID)
	}
}

func TestSignInFormRedirectsAndSignsOut(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	tok := e.formToken(t, c, "/signin?return_to=/account%3Ftab%3Dsessions")
	resp, page := e.postForm(t, c, "/signin", map[string][]string{
		"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}, "return_to": {"/account?tab=sessions"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account?tab=sessions" {
		t.Fatalf("sign-in: %d to %q, want 303 to the return_to path:\n%s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	resp, body := e.request(t, c, http.MethodGet, "/account", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Signed in as alice") || !strings.Contains(string(body), "(this browser)") {
		t.Fatalf("account page: %d\n%s", resp.StatusCode, body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("account page lacks %s", h)
		}
	}
	if strings.Contains(string(body), "<script") || strings.Contains(string(body), "style=") {
		t.Error("page has inline script or style, which the CSP forbids")
	}
	if resp, css := e.request(t, c, http.MethodGet, "/assets/authn/style.css", ""); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || len(css) == 0 {
		t.Errorf("stylesheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	old := e.sessionCookie(c)
	tok = csrfFieldRE.FindStringSubmatch(string(body))[1]
	resp, page = e.postForm(t, c, "/signout", map[string][]string{"csrf": {tok}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "You have signed out") {
		t.Fatalf("sign-out: %d\n%s", resp.StatusCode, page)
	}
	if e.sessionCookie(c) != "" {
		t.Fatal("the session cookie survived sign-out")
	}
	// The old cookie no longer works even if someone kept a copy.
	resp, _ = e.request(t, e.srv.Client(), http.MethodGet, "/api/v1/sessions", "", "Cookie", e.s.CookieName()+"="+old)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the signed-out cookie: %d, want 401", resp.StatusCode)
	}
	resp, _ = e.request(t, c, http.MethodGet, "/account", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?return_to=%2Faccount" {
		t.Fatalf("account page after sign-out: %d %s, want 303 to sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
	recs, _ := e.store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindUser, ID: e.alice.ID}})
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
	}
	if got := strings.Join(actions, ","); got != "user.create,session.signin,session.signout" {
		t.Fatalf("audit actions %s", got)
	}
}

// The account page's language choice: kept in this browser (cookie) and as
// the user's locale, which the next sign-in in another browser applies; a
// language the site does not have, or a forged form, changes nothing.
func TestLanguageChoiceFollowsTheUser(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	tok := e.formToken(t, c, "/signin")
	if resp, page := e.postForm(t, c, "/signin", map[string][]string{"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, page)
	}
	_, body := e.request(t, c, http.MethodGet, "/account", "")
	tok = csrfFieldRE.FindStringSubmatch(string(body))[1]
	if !strings.Contains(string(body), `<option value="de">Deutsch</option>`) {
		t.Fatalf("account page offers no German:\n%s", body)
	}
	for _, bad := range []map[string][]string{{"csrf": {tok}, "language": {"fr"}}, {"csrf": {"forged"}, "language": {"de"}}} {
		if resp, _ := e.postForm(t, c, "/account/language", bad); resp.StatusCode < 400 {
			t.Errorf("%v: %d", bad, resp.StatusCode)
		}
	}
	if resp, page := e.postForm(t, c, "/account/language", map[string][]string{"csrf": {tok}, "language": {"de"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("choosing German: %d %s", resp.StatusCode, page)
	}
	if _, body := e.request(t, c, http.MethodGet, "/account", ""); !strings.Contains(string(body), "<h1>Angemeldet als alice</h1>") {
		t.Fatalf("account page after choosing German:\n%s", body)
	}
	if u, err := e.s.users.GetUser(context.Background(), e.alice.ID); err != nil || u.Locale != "de" {
		t.Fatalf("alice's locale: %v %v", u, err)
	}
	// Another browser, asking for English: her choice wins once she signs in.
	c2 := e.client()
	tok = e.formToken(t, c2, "/signin")
	e.postForm(t, c2, "/signin", map[string][]string{"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}})
	if _, body := e.request(t, c2, http.MethodGet, "/account", "", "Accept-Language", "en"); !strings.Contains(string(body), "Angemeldet als alice") {
		t.Fatalf("the second browser's account page is not German:\n%s", body)
	}
}
