package selfservice

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
)

const newPassword = "seven green lanterns humming"

func (e *accountEnv) forgot(t *testing.T, account string) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"account": account})
	return e.send(t, http.MethodPost, "/api/v1/password/forgot", string(b))
}

func (e *accountEnv) reset(t *testing.T, token, pw string) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"token": token, "newPassword": pw})
	return e.send(t, http.MethodPost, "/api/v1/password/reset", string(b))
}

func (e *accountEnv) passwordIs(t *testing.T, id, pw string) bool {
	t.Helper()
	u, err := e.store.GetUser(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	ok, _ := password.Verify(u.PasswordHash, pw)
	return ok
}

func auditActions(t *testing.T, st store.Store, id string) map[string]int {
	t.Helper()
	recs, err := st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindUser, ID: id}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range recs {
		n[r.Action]++
	}
	return n
}

// TestForgotPassword: the whole recovery through the JSON API: the link
// mailed to the verified address, the form it opens, the new password under
// the policy; afterwards the old sessions are gone, the one-time password's
// obligation too, and the audit log tells it.
func TestForgotPassword(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	e.signIn(t, "alice")
	// An administrator had handed out a one-time password meanwhile.
	if _, err := e.ids.ResetPassword(context.Background(), "admin", alice.ID, "one time password for alice"); err != nil {
		t.Fatal(err)
	}
	e.signIn(t, "alice", "one time password for alice")

	resp, body := e.forgot(t, "alice")
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(body), "If an account has this user name") {
		t.Fatalf("forgot: %d %s", resp.StatusCode, body)
	}
	token := e.resetToken(t, "alice@example.org")
	if raw, _ := b64.DecodeString(token); len(raw) < 16 {
		t.Fatalf("token %q has fewer than 128 bits", token)
	}
	resp, page := e.get(t, "/password/reset?token="+token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `name="token" value="`+token+`"`) {
		t.Fatalf("the link's page: %d\n%s", resp.StatusCode, page)
	}
	// A weak password is refused at its field and the link still works.
	resp, body = e.reset(t, token, "password1234567")
	if p := decodeProblem(t, resp, body); resp.StatusCode != http.StatusUnprocessableEntity || len(p.Errors) != 1 || p.Errors[0].Field != "newPassword" {
		t.Fatalf("weak password: %d %s", resp.StatusCode, body)
	}
	if resp, body = e.reset(t, token, newPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("reset: %d %s", resp.StatusCode, body)
	}
	if !e.passwordIs(t, alice.ID, newPassword) {
		t.Fatal("the new password is not the user's")
	}
	u, _ := e.store.GetUser(context.Background(), alice.ID)
	if u.MustChangePassword {
		t.Fatal("the one-time password's obligation outlived the reset")
	}
	if s, _ := e.store.ListSessions(context.Background(), alice.ID); len(s) != 0 {
		t.Fatalf("%d sessions outlived the reset", len(s))
	}
	if resp, _ := e.send(t, http.MethodGet, "/api/v1/account/data", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session from before the reset: %d, want 401", resp.StatusCode)
	}
	notices := e.mails(t, "alice@example.org")
	if last := notices[len(notices)-1]; last.Subject != "Your password was changed" {
		t.Fatalf("last mail %q, want the notice of the change", last.Subject)
	}
	got := auditActions(t, e.store, alice.ID)
	if got["user.password-reset-request"] != 1 || got["user.password-recover"] != 1 || got["session.terminate-all"] < 1 {
		t.Fatalf("audit records %v", got)
	}
	for _, m := range e.mails(t, "") {
		if strings.Contains(m.Body, newPassword) {
			t.Fatal("a mail holds the password")
		}
	}
}

// TestAttackResetTokenReuse: a link works once; a used link, and every other
// outstanding link of the user, is dead.
func TestAttackResetTokenReuse(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	e.forgot(t, "alice")
	first := e.resetToken(t, "alice@example.org")
	e.forgot(t, "alice@example.org")
	var second string
	for _, m := range e.mails(t, "alice@example.org") {
		if s := resetLinkRE.FindStringSubmatch(m.Body); s != nil && s[1] != first {
			second = s[1]
		}
	}
	if second == "" {
		t.Fatal("no second link")
	}
	if resp, body := e.reset(t, first, newPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("first use: %d %s", resp.StatusCode, body)
	}
	for name, tok := range map[string]string{"the used link": first, "the other outstanding link": second} {
		resp, body := e.reset(t, tok, "another fine passphrase here")
		if p := decodeProblem(t, resp, body); resp.StatusCode != http.StatusBadRequest || p.Errors[0].Field != "token" {
			t.Errorf("%s: %d %s, want 400 naming token", name, resp.StatusCode, body)
		}
		if resp, _ := e.get(t, "/password/reset?token="+tok); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s's page: %d, want 400", name, resp.StatusCode)
		}
	}
	if !e.passwordIs(t, alice.ID, newPassword) {
		t.Fatal("a dead link changed the password")
	}
}

// TestAttackResetTokenExpiry: past ResetTTL (30 minutes by default) the link
// is dead, by the injected clock.
func TestAttackResetTokenExpiry(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	e.forgot(t, "alice")
	token := e.resetToken(t, "alice@example.org")
	e.clock.add(29 * time.Minute)
	if resp, _ := e.get(t, "/password/reset?token="+token); resp.StatusCode != http.StatusOK {
		t.Fatalf("at 29 minutes: %d, want 200", resp.StatusCode)
	}
	e.clock.add(time.Minute)
	if resp, page := e.get(t, "/password/reset?token="+token); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(page), "Link not valid") {
		t.Fatalf("at 30 minutes: %d, want 400\n%s", resp.StatusCode, page)
	}
	if resp, _ := e.reset(t, token, newPassword); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("expired reset: %d, want 400", resp.StatusCode)
	}
	if !e.passwordIs(t, alice.ID, goodPassword) {
		t.Fatal("an expired link changed the password")
	}
}

// TestAttackResetTokenGuessing: random, truncated, altered, padded and
// empty tokens open nothing; another user's link changes only that user.
func TestAttackResetTokenGuessing(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	bob := e.user(t, "bob", true)
	e.forgot(t, "alice")
	e.forgot(t, "bob")
	token := e.resetToken(t, "alice@example.org")
	bobs := e.resetToken(t, "bob@example.org")
	random := make([]byte, resetTokenBytes)
	_, _ = rand.Read(random)
	flip := []byte(token)
	flip[5] ^= 1
	for name, guess := range map[string]string{
		"random":    b64.EncodeToString(random),
		"truncated": token[:len(token)-1],
		"half":      token[:len(token)/2],
		"altered":   string(flip),
		"padded":    token + "A",
		"empty":     "",
		"not b64":   strings.Repeat("!", len(token)),
		"spaces":    " " + token + " ",
	} {
		resp, body := e.reset(t, guess, newPassword)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s token: %d %s, want 400", name, resp.StatusCode, body)
		}
		if resp, _ := e.get(t, "/password/reset?token="+url.QueryEscape(guess)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s token's page: %d, want 400", name, resp.StatusCode)
		}
	}
	if resp, body := e.reset(t, bobs, newPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("bob's link: %d %s", resp.StatusCode, body)
	}
	if !e.passwordIs(t, alice.ID, goodPassword) || !e.passwordIs(t, bob.ID, newPassword) {
		t.Fatal("bob's link changed another password than bob's")
	}
	// The stored hash is keyed: the token's plain SHA-256 is not it, and
	// the identity service refuses a reset for another user than its own.
	hash, _ := e.h.resetHash(token)
	if _, err := e.ids.RecoverPassword(context.Background(), "x", hash, bob.ID, alice.PasswordHash, time.Now()); err == nil {
		t.Fatal("alice's reset set bob's password")
	}
	if resp, _ := e.reset(t, token, newPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("alice's link after the refused misuse: %d, want 204", resp.StatusCode)
	}
}

// TestAttackResetEnumeration: a reset for an unknown user name or address,
// an address nobody verified, a disabled account, answers exactly as for a
// known one: the same status, headers and body, through the API and the
// form, and mails only the known, verified, active account.
func TestAttackResetEnumeration(t *testing.T) {
	e := newAccountEnv(t)
	e.user(t, "alice", true)
	e.user(t, "carol", false)
	dave := e.user(t, "dave", true)
	if _, err := e.ids.UpdateUser(context.Background(), "test", dave.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		header http.Header
		body   string
	}
	ask := func(account string) (api, form answer) {
		resp, body := e.forgot(t, account)
		resp.Header.Del("Date")
		api = answer{resp.StatusCode, resp.Header, string(body)}
		resp, page := e.get(t, "/password/forgot")
		tok := csrfFieldRE.FindSubmatch(page)
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/password/forgot", strings.NewReader(url.Values{"csrf": {string(tok[1])}, "account": {account}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body = e.do(t, req)
		resp.Header.Del("Date")
		resp.Header.Del("Set-Cookie")
		return api, answer{resp.StatusCode, resp.Header, string(body)}
	}
	wantAPI, wantForm := ask("alice")
	if wantAPI.status != http.StatusAccepted || wantForm.status != http.StatusSeeOther || wantForm.header.Get("Location") != "/password/forgot/sent" {
		t.Fatalf("known account: API %d, form %d %s", wantAPI.status, wantForm.status, wantForm.header.Get("Location"))
	}
	for _, account := range []string{"nobody", "nobody@example.org", "carol@example.org", "carol", "dave", "ALICE@EXAMPLE.ORG", "alice@example.org"} {
		api, form := ask(account)
		if api.status != wantAPI.status || api.body != wantAPI.body || !equalHeaders(api.header, wantAPI.header) {
			t.Errorf("API for %q answered %d %v %s; for alice %d %v %s", account, api.status, api.header, api.body, wantAPI.status, wantAPI.header, wantAPI.body)
		}
		if form.status != wantForm.status || form.body != wantForm.body || !equalHeaders(form.header, wantForm.header) {
			t.Errorf("form for %q answered %d %v; for alice %d %v", account, form.status, form.header, wantForm.status, wantForm.header)
		}
	}
	for _, m := range e.mails(t, "") {
		if m.To != "alice@example.org" {
			t.Errorf("a mail went to %s", m.To)
		}
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, ",") != strings.Join(b.Values(k), ",") {
			return false
		}
	}
	return true
}

// TestAttackResetThrottled: per account (whichever name is typed), per
// typed name, and per client address. A throttled request is answered as
// usual and sends nothing.
func TestAttackResetThrottled(t *testing.T) {
	e := newAccountEnv(t, func(o *Options) { o.MailsPerHour = 2 })
	e.user(t, "alice", true)
	for _, account := range []string{"alice", "alice@example.org", "alice", "ALICE@example.org"} {
		if resp, _ := e.forgot(t, account); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("forgot %s: %d", account, resp.StatusCode)
		}
	}
	if n := len(e.mails(t, "alice@example.org")); n != 2 {
		t.Fatalf("%d mails to one account, want 2 (the hour's allowance)", n)
	}
	// Per client address: the registration bucket.
	e2 := newAccountEnv(t, func(o *Options) { o.RatePerMinute, o.Burst = 1, 2 })
	codes := []int{}
	for range 3 {
		resp, _ := e2.forgot(t, "nobody")
		codes = append(codes, resp.StatusCode)
	}
	if codes[2] != http.StatusTooManyRequests {
		t.Fatalf("answers %v, want the third refused with 429", codes)
	}
}

// TestAttackCSRFOnEveryForm: every self-service form without its token, or
// with one of another browser, is refused with 403 and changes nothing.
func TestAttackCSRFOnEveryForm(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	e.forgot(t, "alice")
	token := e.resetToken(t, "alice@example.org")
	e.signIn(t, "alice")
	other := newAccountEnv(t)
	_, page := other.get(t, "/password/forgot")
	foreign := string(csrfFieldRE.FindSubmatch(page)[1])
	before := len(e.mails(t, ""))
	for _, f := range []struct {
		path string
		form url.Values
	}{
		{"/password/forgot", url.Values{"account": {"alice"}}},
		{"/password/reset", url.Values{"token": {token}, "newPassword": {newPassword}, "passwordConfirm": {newPassword}}},
		{"/account/email", url.Values{"email": {"evil@example.org"}}},
		{"/account/delete", url.Values{"password": {goodPassword}}},
		{"/account/data", url.Values{}},
	} {
		for name, csrf := range map[string]string{"none": "", "another browser's": foreign} {
			form := url.Values{}
			for k, v := range f.form {
				form[k] = v
			}
			if csrf != "" {
				form.Set("csrf", csrf)
			}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+f.path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body := e.do(t, req)
			if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), `"profile"`) {
				t.Errorf("POST %s with %s token: %d, want 403", f.path, name, resp.StatusCode)
			}
		}
	}
	if after := len(e.mails(t, "")); after != before {
		t.Fatalf("refused forms sent %d mails", after-before)
	}
	if !e.passwordIs(t, alice.ID, goodPassword) {
		t.Fatal("a refused form changed the password")
	}
	if _, err := e.store.GetUser(context.Background(), alice.ID); err != nil {
		t.Fatalf("a refused form deleted the account: %v", err)
	}
}

// TestAttackResetCrossOrigin: a cross-site POST is refused before the form
// is read (Sec-Fetch-Site), even with a valid token.
func TestAttackResetCrossOrigin(t *testing.T) {
	e := newAccountEnv(t)
	for _, route := range []string{"POST /password/forgot", "POST /api/v1/password/forgot", "POST /account/delete", "DELETE /api/v1/account"} {
		method, path, _ := strings.Cut(route, " ")
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(`{"account":"alice"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if resp, _ := e.do(t, req); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site %s: %d, want 403", route, resp.StatusCode)
		}
	}
}

// TestSendPasswordReset: the administrators' path mails the link as if the
// user had asked, and says when there is no verified address to mail.
func TestSendPasswordReset(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	carol := e.user(t, "carol", false)
	ctx := context.Background()
	if err := e.h.SendPasswordReset(ctx, "user:admin", alice.ID); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.reset(t, e.resetToken(t, "alice@example.org"), newPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the administrator's link: %d", resp.StatusCode)
	}
	if err := e.h.SendPasswordReset(ctx, "user:admin", carol.ID); err != ErrNoVerifiedEmail {
		t.Fatalf("no verified address: %v, want ErrNoVerifiedEmail", err)
	}
	if err := e.h.SendPasswordReset(ctx, "user:admin", "missing"); err == nil {
		t.Fatal("a reset for nobody")
	}
	recs, _ := e.store.ListAudit(ctx, store.AuditQuery{Action: store.TextMatch{Value: "user.password-reset-request"}})
	if len(recs) != 1 || recs[0].Actor != "user:admin" {
		t.Fatalf("audit %+v, want one request by the administrator", recs)
	}
}

// FuzzLinkTokens: whatever arrives as a link's token, parsing it neither
// panics nor accepts anything that was not made with the key: a reset token
// is exactly 32 bytes of base64url, a signed token opens only with its MAC.
func FuzzLinkTokens(f *testing.F) {
	h := New(nil, Options{SigningKey: testKey})
	good := h.sign(purposeEmail, emailClaims{UserID: "u", From: "a@example.org", To: "b@example.org", Expires: 1 << 40})
	for _, s := range []string{"", ".", "..", good, good + "x", strings.Repeat("A", 43), "e30.", "e30." + strings.Repeat("A", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if hash, err := h.resetHash(tok); err == nil {
			if raw, _ := b64.DecodeString(tok); len(raw) != resetTokenBytes || len(hash) != 32 {
				t.Fatalf("reset token %q accepted", tok)
			}
		}
		var c emailClaims
		if err := h.open(purposeEmail, tok, &c); err == nil && tok != good {
			t.Fatalf("token %q opened without being signed", tok)
		}
		if err := h.open(purposeVerify, tok, &c); err == nil {
			t.Fatalf("token %q opened for another purpose", tok)
		}
	})
}

// TestMailMetrics: e-mails are counted by kind and result.
func TestMailMetrics(t *testing.T) {
	e := newAccountEnv(t, func(o *Options) { o.MailsPerHour = 1 })
	e.user(t, "alice", true)
	e.forgot(t, "alice")
	e.forgot(t, "alice")
	e.mails(t, "")
	for result, want := range map[string]float64{"sent": 1, "throttled": 1} {
		var m dto.Metric
		if err := e.h.mailCount.WithLabelValues("password_reset", result).Write(&m); err != nil || m.GetCounter().GetValue() != want {
			got := m.GetCounter().GetValue()
			t.Errorf("password_reset %s = %v, want %v", result, got, want)
		}
	}
}
