package authn

// Attacks on sign-in and sessions through real HTTPS, the real identity
// service and a real SQLite store. Each test tries to break one rule.

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// TestAttackSessionFixation: a session identifier the browser had before
// signing in (planted by an attacker, or an earlier session) never becomes the
// signed-in one, and an earlier session ends.
func TestAttackSessionFixation(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	u, _ := url.Parse(e.srv.URL)
	planted := b64.EncodeToString(make([]byte, 32))
	c.Jar.SetCookies(u, []*http.Cookie{{Name: e.s.CookieName(), Value: planted, Path: "/"}})
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	first := e.sessionCookie(c)
	if first == planted || first == "" {
		t.Fatal("the planted cookie was kept through sign-in")
	}
	// Signing in again (as anyone) rotates too, and ends the first session.
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("second sign-in: %d %s", resp.StatusCode, body)
	}
	if second := e.sessionCookie(c); second == first {
		t.Fatal("signing in again kept the session identifier")
	}
	resp, _ := e.request(t, e.srv.Client(), http.MethodGet, "/api/v1/sessions", "", "Cookie", e.s.CookieName()+"="+first)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the pre-sign-in session still works: %d", resp.StatusCode)
	}
	if status, list := e.listOwn(t, c); status != http.StatusOK || len(list) != 1 {
		t.Fatalf("own sessions %d %+v, want only the new one", status, list)
	}
}

func TestAttackOpenRedirect(t *testing.T) {
	for _, v := range []string{
		"//evil.com", "///evil.com", "/\\evil.com", "\\\\evil.com", "https://evil.com", "http:/evil.com",
		"/%2F%2Fevil.com", "/%2f/evil.com", "/%5Cevil.com", "javascript:alert(1)", "JavaScript:alert(1)",
		"/\t/evil.com", "/\n/evil.com", "/\r\n/evil.com", " /account", "evil.com", "account", "//", "/\x00",
		"data:text/html,x", "/" + strings.Repeat("a", 3000),
	} {
		if got := safeReturnTo(v); got != "" {
			t.Errorf("safeReturnTo(%q) = %q, want refused", v, got)
		}
	}
	for _, v := range []string{"/", "/account", "/account?tab=sessions#top", "/oauth/authorize?client_id=x&redirect_uri=https%3A%2F%2Fapp.example"} {
		if got := safeReturnTo(v); got != v {
			t.Errorf("safeReturnTo(%q) = %q, want it kept", v, got)
		}
	}

	// Through the pages: a bad return_to is neither put in the form nor followed.
	e := newEnv(t, testOptions())
	c := e.client()
	resp, body := e.request(t, c, http.MethodGet, "/signin?return_to="+url.QueryEscape("//evil.com"), "")
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "evil.com") {
		t.Fatalf("sign-in page carries the bad return_to:\n%s", body)
	}
	tok := csrfFieldRE.FindStringSubmatch(string(body))[1]
	for _, v := range []string{"//evil.com", "/\\evil.com", "https://evil.com", "/%2F%2Fevil.com", "javascript:alert(1)"} {
		resp, page := e.postForm(t, c, "/signin", url.Values{"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}, "return_to": {v}})
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/account" {
			t.Errorf("return_to %q: %d to %q, want 303 to /account:\n%s", v, resp.StatusCode, loc, page)
		}
	}
}

// answer is a response with what may differ between two equal answers removed.
func answer(resp *http.Response, body []byte, typed ...string) string {
	h := resp.Header.Clone()
	h.Del("Date")
	if len(typed) > 0 {
		h.Del("Content-Length") // differs by the length of the name shown; the body is compared
	}
	var b strings.Builder
	b.WriteString(resp.Status + "\n")
	_ = h.Write(&b)
	s := string(body)
	for _, name := range typed {
		s = strings.ReplaceAll(s, name, "NAME") // the form shows the name typed
	}
	b.WriteString(s)
	return b.String()
}

// TestAttackNoUserEnumeration: an unknown user, a wrong password and a disabled
// user's right password get byte-identical answers (status, headers except
// Date, body), also once the back-off starts.
func TestAttackNoUserEnumeration(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	tok := e.formToken(t, c, "/signin")
	tries := []struct{ user, pw string }{
		{"alice", "wrong password"}, {"nobody", "wrong password"}, {"dora", doraPassword},
	}
	for round := 1; round <= 7; round++ {
		var jsonAnswers, formAnswers []string
		for _, tr := range tries {
			resp, body := e.signinJSON(t, c, tr.user, tr.pw)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("round %d, %s: %d %s", round, tr.user, resp.StatusCode, body)
			}
			jsonAnswers = append(jsonAnswers, answer(resp, body))
			// The form under a second, distinct name per account (the same
			// counters as JSON would make the form wait).
			resp, page := e.postForm(t, c, "/signin", url.Values{"csrf": {tok}, "userName": {tr.user + "-form"}, "password": {tr.pw}})
			formAnswers = append(formAnswers, answer(resp, []byte(page), tr.user+"-form"))
		}
		for i := 1; i < len(tries); i++ {
			if jsonAnswers[i] != jsonAnswers[0] {
				t.Fatalf("round %d: JSON answers differ for %s and %s:\n%s\n----\n%s", round, tries[0].user, tries[i].user, jsonAnswers[0], jsonAnswers[i])
			}
			if formAnswers[i] != formAnswers[0] {
				t.Fatalf("round %d: form answers differ for %s and %s:\n%s\n----\n%s", round, tries[0].user, tries[i].user, formAnswers[0], formAnswers[i])
			}
		}
		if round >= 5 && !strings.Contains(jsonAnswers[0], "Retry-After") {
			t.Fatalf("round %d: no Retry-After once the back-off started:\n%s", round, jsonAnswers[0])
		}
		e.advance(time.Hour / 60) // past every wait of these rounds (at most 4 s), within the window
	}
	if status, _ := e.listOwn(t, c); status != http.StatusUnauthorized {
		t.Fatal("a failed sign-in left a session")
	}
	sessions, _ := e.s.st.ListSessions(context.Background(), e.dora.ID)
	if len(sessions) != 0 {
		t.Fatal("the disabled user got a session")
	}
}

func TestAttackBackoff(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	retry := func(resp *http.Response) int {
		n, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return n
	}
	for i := 1; i <= 5; i++ {
		resp, body := e.signinJSON(t, c, "alice", "guess "+strconv.Itoa(i))
		want := 0
		if i == 5 {
			want = 1 // 2^(5-5) s
		}
		if resp.StatusCode != http.StatusUnauthorized || retry(resp) != want {
			t.Fatalf("failure %d: %d Retry-After %q, want 401 and %d: %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), want, body)
		}
	}
	// While waiting, even the right password gets the generic failure.
	resp, body := e.signinJSON(t, c, "ALICE", alicePassword)
	if p := decodeProblem(t, resp, body); resp.StatusCode != http.StatusUnauthorized || retry(resp) != 1 || p.Detail != "the user name or password is wrong" {
		t.Fatalf("right password while waiting: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	e.advance(time.Second)
	if resp, _ := e.signinJSON(t, c, "alice", "guess 6"); retry(resp) != 2 {
		t.Fatalf("sixth failure: Retry-After %q, want 2", resp.Header.Get("Retry-After"))
	}
	e.advance(time.Second)
	if resp, _ := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusUnauthorized || retry(resp) != 1 {
		t.Fatalf("after 1 of 2 s: %d Retry-After %q, want refused for 1 more second", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	e.advance(time.Second)
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the wait: %d %s", resp.StatusCode, body)
	}
	// Success reset the count.
	if resp, _ := e.signinJSON(t, c, "alice", "guess 7"); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("first failure after success: %d Retry-After %q, want none", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	s := e.s
	for n, want := range map[int]time.Duration{0: 0, 4: 0, 5: time.Second, 6: 2 * time.Second, 10: 32 * time.Second, 14: 512 * time.Second, 15: 15 * time.Minute, 100: 15 * time.Minute} {
		if got := s.backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestAttackIPThrottle: one address gets IPBurst attempts, then 429 with
// Retry-After, whatever user names it tries and whatever forwarding headers it
// sends; the throttle refuses before any password is checked.
func TestAttackIPThrottle(t *testing.T) {
	opts := testOptions()
	opts.IPAttemptsPerMinute, opts.IPBurst = 1, 3
	e := newEnv(t, opts)
	c := e.client()
	headers := [][]string{
		{"X-Forwarded-For", "203.0.113.1"}, {"X-Real-IP", "203.0.113.2"}, {"Forwarded", "for=203.0.113.3"},
		{"True-Client-IP", "203.0.113.4"}, {"X-Forwarded-For", "203.0.113.5, 198.51.100.7"},
	}
	for i, h := range headers {
		resp, body := e.signinJSON(t, c, "spray"+strconv.Itoa(i), "password123", h...)
		want := http.StatusUnauthorized
		if i >= 3 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("attempt %d with %s: %d %s, want %d", i+1, h[0], resp.StatusCode, body, want)
		}
		if want == http.StatusTooManyRequests {
			decodeProblem(t, resp, body)
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 || s > 15*60 {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
		}
	}
	// Even the right password waits.
	if resp, _ := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password from a throttled address: %d, want 429", resp.StatusCode)
	}
	// The bucket refills.
	e.advance(10 * time.Minute)
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("after refill: %d %s", resp.StatusCode, body)
	}
}

func TestClientPrefix(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5555":                     "192.0.2.7/32",
		"[::ffff:192.0.2.7]:5555":            "192.0.2.7/32",
		"[2001:db8:1:2:aaaa::1]:443":         "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb:cccc:dddd:1]:80": "2001:db8:1:2::/64",
	} {
		if got := clientPrefix(&http.Request{RemoteAddr: remote}).String(); got != want {
			t.Errorf("clientPrefix(%s) = %s, want %s", remote, got, want)
		}
	}
}

// TestAttackTerminatedSessionStopsAtOnce: ending a session through the API
// makes its cookie useless on the very next request; nobody ends a session
// that is not theirs.
func TestAttackTerminatedSessionStopsAtOnce(t *testing.T) {
	e := newEnv(t, testOptions())
	laptop, phone := e.client(), e.client()
	for _, c := range []*http.Client{laptop, phone} {
		if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
			t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
		}
	}
	_, list := e.listOwn(t, laptop)
	if len(list) != 2 {
		t.Fatalf("sessions %+v, want two", list)
	}
	i := slices.IndexFunc(list, func(s sessionInfo) bool { return !s.Current })
	phoneID := list[i].ID
	if resp, body := e.request(t, laptop, http.MethodDelete, "/api/v1/sessions/"+phoneID, ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("ending the phone's session: %d %s", resp.StatusCode, body)
	}
	if status, _ := e.listOwn(t, phone); status != http.StatusUnauthorized {
		t.Fatalf("the ended session still works: %d", status)
	}
	for _, id := range []string{phoneID, "0000000000000000", "zz", "../../admin"} {
		if resp, _ := e.request(t, laptop, http.MethodDelete, "/api/v1/sessions/"+url.PathEscape(id), ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("ending session %q: %d, want 404", id, resp.StatusCode)
		}
	}
	// Without a session there is nothing to list or end.
	if resp, body := e.request(t, e.client(), http.MethodDelete, "/api/v1/sessions/"+list[1-i].ID, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ending a session without one: %d %s", resp.StatusCode, body)
	}
	if status, _ := e.listOwn(t, laptop); status != http.StatusOK {
		t.Fatal("the laptop lost its session")
	}
}

func TestAttackAdminTerminatesAnotherUsersSessions(t *testing.T) {
	e := newEnv(t, testOptions())
	alice := e.client()
	if resp, body := e.signinJSON(t, alice, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	path := "/api/v1/admin/users/" + e.alice.ID + "/sessions"
	// Alice's own session is no admin credential; neither is nothing.
	for name, c := range map[string]*http.Client{"alice's session": alice, "no credentials": e.client()} {
		resp, body := e.request(t, c, http.MethodDelete, path, "")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s: %d %s, want 401 with a challenge", name, resp.StatusCode, body)
		}
		decodeProblem(t, resp, body)
	}
	admin := e.client()
	bearer := []string{"Authorization", "Bearer " + e.adminToken}
	resp, body := e.request(t, admin, http.MethodGet, path, "", bearer...)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"remoteIp":"127.0.0.1"`) || strings.Contains(string(body), `"current":true`) {
		t.Fatalf("admin listing: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.request(t, admin, http.MethodGet, "/api/v1/admin/users/no-such-user/sessions", "", bearer...); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown user: %d, want 404", resp.StatusCode)
	}
	if resp, body := e.request(t, admin, http.MethodDelete, path, "", bearer...); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("admin termination: %d %s", resp.StatusCode, body)
	}
	if status, _ := e.listOwn(t, alice); status != http.StatusUnauthorized {
		t.Fatalf("alice's session survived the admin: %d", status)
	}
	recs, _ := e.store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindUser, ID: e.alice.ID}})
	if last := recs[len(recs)-1]; last.Action != "session.terminate-all" || !strings.HasPrefix(last.Actor, "admin:") {
		t.Fatalf("last audit record %+v", last)
	}
}

// TestAttackDisabledOrDeletedUserLosesSession: disabling or deleting a user
// ends what their sessions can do at once.
func TestAttackDisabledOrDeletedUserLosesSession(t *testing.T) {
	e := newEnv(t, testOptions())
	ctx := context.Background()
	c := e.client()
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	if _, err := e.ids.UpdateUser(ctx, "test", e.alice.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.listOwn(t, c); status != http.StatusUnauthorized {
		t.Fatalf("a disabled user's session: %d, want 401", status)
	}
	if _, err := e.ids.UpdateUser(ctx, "test", e.alice.ID, 0, func(u *store.User) error { u.Status = store.StatusActive; return nil }); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.listOwn(t, c); status != http.StatusUnauthorized {
		t.Fatal("enabling the user again revived the session")
	}
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	if err := e.ids.DeleteUser(ctx, "test", e.alice.ID, 0); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.listOwn(t, c); status != http.StatusUnauthorized {
		t.Fatalf("a deleted user's session: %d, want 401", status)
	}
}

func TestAttackTimeouts(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	raw, _ := b64.DecodeString(e.sessionCookie(c))
	lastSeen := func() time.Time {
		s, err := e.s.st.GetSession(context.Background(), e.s.hash(raw))
		if err != nil {
			t.Fatalf("reading the session: %v", err)
		}
		return s.LastSeen
	}
	created := lastSeen()
	e.advance(30 * time.Second)
	e.listOwn(t, c)
	if !lastSeen().Equal(created) {
		t.Fatal("LastSeen written twice within a minute")
	}
	// Active every 20 minutes: the idle timeout (30 min) never strikes...
	for range 5 {
		e.advance(20 * time.Minute)
		if status, _ := e.listOwn(t, c); status != http.StatusOK {
			t.Fatalf("an active session ended after %v", e.offset)
		}
	}
	if !lastSeen().After(created) {
		t.Fatal("LastSeen never updated")
	}
	// ...but 31 idle minutes do.
	e.advance(31 * time.Minute)
	if status, _ := e.listOwn(t, c); status != http.StatusUnauthorized {
		t.Fatal("the session outlived the idle timeout")
	}

	// The absolute timeout ends even an active session.
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	for range 12*3 - 1 {
		e.advance(20 * time.Minute)
		if status, _ := e.listOwn(t, c); status != http.StatusOK {
			t.Fatalf("an active session ended after %v", e.offset)
		}
	}
	e.advance(20 * time.Minute)
	if status, _ := e.listOwn(t, c); status != http.StatusUnauthorized {
		t.Fatal("the session outlived the absolute timeout")
	}
}

// TestAttackCrossSiteRequests: http.CrossOriginProtection refuses cross-site
// browser requests; the signed double-submit token refuses forged forms from
// browsers that send neither Sec-Fetch-Site nor Origin.
func TestAttackCrossSiteRequests(t *testing.T) {
	e := newEnv(t, testOptions())
	c := e.client()
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	tok := e.formToken(t, c, "/account")
	login := url.Values{"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}}
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"}, {"Sec-Fetch-Site", "same-site"},
		{"Origin", "https://evil.example"}, {"Origin", "null"},
	} {
		for _, path := range []string{"/signin", "/signout"} {
			resp, page := e.postForm(t, c, path, login, h...)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Request refused") {
				t.Errorf("%s with %s: %s: %d, want 403", path, h[0], h[1], resp.StatusCode)
			}
		}
		resp, body := e.signinJSON(t, c, "alice", alicePassword, h...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("JSON sign-in with %s: %s: %d, want 403", h[0], h[1], resp.StatusCode)
		} else {
			decodeProblem(t, resp, body)
		}
		_, list := e.listOwn(t, c)
		if resp, _ := e.request(t, c, http.MethodDelete, "/api/v1/sessions/"+list[0].ID, "", h...); resp.StatusCode != http.StatusForbidden {
			t.Errorf("DELETE with %s: %s: %d, want 403", h[0], h[1], resp.StatusCode)
		}
	}
	// Forms without a token, with a foreign one, or with a tampered one.
	tampered := []byte(tok)
	tampered[3] ^= 1
	for name, v := range map[string]string{"no token": "", "tampered token": string(tampered)} {
		f := url.Values{"csrf": {v}, "userName": {"alice"}, "password": {alicePassword}}
		if resp, _ := e.postForm(t, c, "/signin", f); resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in with %s: %d, want 403", name, resp.StatusCode)
		}
		if resp, _ := e.postForm(t, c, "/signout", f); resp.StatusCode != http.StatusForbidden {
			t.Errorf("sign-out with %s: %d, want 403", name, resp.StatusCode)
		}
	}
	other := e.client() // a browser whose cookie is not the token's pair
	if resp, _ := e.postForm(t, other, "/signin", login); resp.StatusCode != http.StatusForbidden {
		t.Errorf("someone else's token: %d, want 403", resp.StatusCode)
	}
	// A form cannot send JSON: other content types are refused.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		if resp, _ := e.request(t, c, http.MethodPost, "/api/v1/signin", `{"userName":"alice","password":"`+alicePassword+`"}`, "Content-Type", ct); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("JSON sign-in as %s: %d, want 415", ct, resp.StatusCode)
		}
	}
	if status, list := e.listOwn(t, c); status != http.StatusOK || len(list) != 1 {
		t.Fatalf("after the attacks: %d %+v, want alice's one session intact", status, list)
	}
}
