package selfservice

// Attacks on self-registration through real HTTP, the real identity service and
// a real SQLite store. Every test tries to break one rule and stays as a
// regression test.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// TestAttackThrottleIgnoresForwardingHeaders: forwarding headers are not
// trusted, so rotating them does not buy fresh buckets.
func TestAttackThrottleIgnoresForwardingHeaders(t *testing.T) {
	opts := testOptions()
	opts.RatePerMinute, opts.Burst = 1, 2
	e := newBareEnv(t, opts)
	headers := [][]string{
		{"X-Forwarded-For", "203.0.113.1"},
		{"X-Forwarded-For", "203.0.113.2, 198.51.100.7"},
		{"X-Real-IP", "203.0.113.3"},
		{"Forwarded", "for=203.0.113.4"},
		{"True-Client-IP", "203.0.113.5"},
		{"CF-Connecting-IP", "203.0.113.6"},
	}
	for i, h := range headers {
		resp, _ := e.postJSON(t, `{`, h...)
		want := http.StatusBadRequest
		if i >= 2 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Errorf("attempt %d with %s: %s: %d, want %d", i+1, h[0], h[1], resp.StatusCode, want)
		}
	}
}

// TestAttackLookalikeUserNames: a name that is another spelling of a taken
// name (case, spaces, full-width forms) is taken; a name with invisible or
// direction-changing characters is refused. Nothing is stored either way.
func TestAttackLookalikeUserNames(t *testing.T) {
	e := newEnv(t, testOptions())
	if resp, body := e.postJSON(t, `{"userName":"admin","email":"a@example.org","password":"`+goodPassword+`"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("registering admin: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		name string
		want int
	}{
		{"ADMIN", http.StatusConflict},
		{"Admin", http.StatusConflict},
		{" admin ", http.StatusConflict},
		{"\u3000admin", http.StatusConflict}, // ideographic space
		{"ＡＤＭＩＮ", http.StatusConflict},       // full-width
		{"ａｄｍｉｎ", http.StatusConflict},
		{"ａdmin", http.StatusConflict},
		{"admin\u200b", http.StatusUnprocessableEntity}, // zero-width space
		{"ad\u00admin", http.StatusUnprocessableEntity}, // soft hyphen
		{"\u202eadmin", http.StatusUnprocessableEntity}, // right-to-left override
		{"admin\ufeff", http.StatusUnprocessableEntity}, // byte order mark
		{"admin\u2060", http.StatusUnprocessableEntity}, // word joiner
		{"admin\u2028x", http.StatusUnprocessableEntity},
		{"admin\x00", http.StatusUnprocessableEntity},
		{"admin\r\nBcc: x@example.org", http.StatusUnprocessableEntity},
	} {
		body, _ := json.Marshal(map[string]string{"userName": tc.name, "email": "m@example.org", "password": goodPassword})
		resp, b := e.postJSON(t, string(body))
		if resp.StatusCode != tc.want {
			t.Errorf("register %q: %d, want %d: %s", tc.name, resp.StatusCode, tc.want, b)
			continue
		}
		if p := decodeProblem(t, resp, b); len(p.Errors) != 1 || p.Errors[0].Field != "userName" {
			t.Errorf("register %q: the problem does not name userName: %s", tc.name, b)
		}
	}
	if n := e.userCount(t); n != 1 {
		t.Errorf("%d users stored, want only admin", n)
	}
	// A full-width registration of a free name is stored in its plain form.
	if resp, b := e.postJSON(t, `{"userName":"ｊｏｈｎ","email":"j@example.org","password":"`+goodPassword+`"}`); resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"userName":"john"`) {
		t.Errorf("full-width free name: %d %s", resp.StatusCode, b)
	}
}

// TestAttackRegistrationMassAssignment: the JSON API takes exactly the four
// registration fields; verification flags, ids, groups or a hash are refused.
func TestAttackRegistrationMassAssignment(t *testing.T) {
	e := newEnv(t, testOptions())
	for _, extra := range []string{`"emailVerified":true`, `"id":"00000000-0000-0000-0000-000000000001"`,
		`"groups":["administrators"]`, `"passwordHash":"$argon2id$"`, `"status":"active"`, `"EmailVerified":true`} {
		resp, b := e.postJSON(t, `{"userName":"eve","email":"eve@example.org","password":"`+goodPassword+`",`+extra+`}`)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("with %s: %d, want 400: %s", extra, resp.StatusCode, b)
		}
	}
	// The form ignores fields it does not know.
	tok := e.formToken(t)
	form := registrationForm(tok, "frank", goodPassword, goodPassword)
	form.Set("emailVerified", "true")
	form.Set("id", "00000000-0000-0000-0000-000000000001")
	if resp, page := e.postForm(t, form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form: %d %s", resp.StatusCode, page)
	}
	u, err := e.store.GetUserByName(context.Background(), "frank")
	if err != nil || u.EmailVerified || u.ID == "00000000-0000-0000-0000-000000000001" {
		t.Errorf("form registration took extra fields: %+v %v", u, err)
	}
	if n := e.userCount(t); n != 1 {
		t.Errorf("%d users stored, want 1", n)
	}
}

// TestAttackNoOpenRedirect: whatever the request says, the only redirect goes
// to our own confirmation page.
func TestAttackNoOpenRedirect(t *testing.T) {
	e := newEnv(t, testOptions())
	for _, q := range []string{"?next=https://evil.example", "?redirect_uri=//evil.example", "?return_to=%2F%2Fevil.example"} {
		tok := e.formToken(t)
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/register"+q, strings.NewReader(
			registrationForm(tok, "user"+string(rune('a'+len(q)%26))+strings.Repeat("x", len(q)), goodPassword, goodPassword).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Referer", "https://evil.example/")
		resp, body := e.do(t, req)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/register/done" {
			t.Errorf("POST /register%s: %d Location %q: %s", q, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	for _, p := range []string{"/register/done?next=https://evil.example", "/register/verify?token=x&next=https://evil.example", "/register?next=//evil.example"} {
		resp, _ := e.get(t, p)
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Errorf("GET %s redirects to %q", p, loc)
		}
	}
}

// TestAttackVerificationTokens: a link vouches for one user's primary address
// only; it cannot be re-targeted, and it goes stale when the address changes.
func TestAttackVerificationTokens(t *testing.T) {
	opts := testOptions()
	opts.EmailVerification = true
	opts.OutboxDir = filepath.Join(t.TempDir(), "outbox")
	e := newEnv(t, opts)
	ctx := context.Background()
	for _, n := range []string{"alice", "bob"} {
		if resp, b := e.postJSON(t, `{"userName":"`+n+`","email":"`+n+`@example.org","password":"`+goodPassword+`"}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s: %d %s", n, resp.StatusCode, b)
		}
	}
	alice, _ := e.store.GetUserByName(ctx, "alice")
	bob, _ := e.store.GetUserByName(ctx, "bob")
	aliceTok := e.h.verifyToken(verifyClaims{UserID: alice.ID, Email: "alice@example.org", Expires: time.Now().Add(time.Hour).Unix()})

	// Re-targeting: swap the payload for bob's, keep alice's signature.
	payload, sig, _ := strings.Cut(aliceTok, ".")
	bobPayload, _ := json.Marshal(verifyClaims{UserID: bob.ID, Email: "bob@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	for name, tok := range map[string]string{
		"payload of bob, signature of alice": b64.EncodeToString(bobPayload) + "." + sig,
		"extra claims":                       b64.EncodeToString([]byte(`{"sub":"`+alice.ID+`","email":"alice@example.org","exp":9999999999,"sub":"`+bob.ID+`"}`)) + "." + sig,
		"signature only":                     "." + sig,
		"payload only":                       payload,
		"CSRF token as verification token":   e.formToken(t),
		"padding added":                      payload + "=." + sig,
	} {
		if resp, page := e.get(t, "/register/verify?token="+url.QueryEscape(tok)); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400:\n%.300s", name, resp.StatusCode, page)
		}
	}
	// Alice's token names alice's address: it does nothing for bob, and a
	// token for bob's id with alice's address is a forgery.
	if u, _ := e.store.GetUser(ctx, bob.ID); u.EmailVerified {
		t.Fatal("bob verified by a forged link")
	}

	// The primary address changes (alice@ stays as a secondary one): alice's
	// old link must not mark the new primary verified.
	if _, err := e.h.users.UpdateUser(ctx, "test", alice.ID, 0, func(u *store.User) error {
		u.Emails = []store.MultiValue{{Value: "mallory@evil.example", Primary: true}, {Value: "alice@example.org"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.get(t, "/register/verify?token="+aliceTok); resp.StatusCode != http.StatusConflict {
		t.Errorf("old link after a primary change: %d, want 409", resp.StatusCode)
	}
	if u, _ := e.store.GetUser(ctx, alice.ID); u.EmailVerified {
		t.Error("an old link verified the new primary address")
	}

	// Bob verifies, then his address is changed: the flag does not carry over
	// to the new address; verifying with the old link again does nothing.
	bobTok := e.h.verifyToken(verifyClaims{UserID: bob.ID, Email: "bob@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/register/verify?token="+bobTok); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's link: %d", resp.StatusCode)
	}
	if _, err := e.h.users.UpdateUser(ctx, "test", bob.ID, 0, func(u *store.User) error {
		u.Emails = []store.MultiValue{{Value: "bob@elsewhere.example"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.store.GetUser(ctx, bob.ID); u.EmailVerified {
		t.Error("bob's new address counts as verified")
	}
	if resp, _ := e.get(t, "/register/verify?token="+bobTok); resp.StatusCode != http.StatusConflict {
		t.Errorf("bob's old link after the change: %d, want 409", resp.StatusCode)
	}
}

// TestAttackMailHeaderInjection: what ends up in the verification e-mail
// cannot add headers or recipients.
func TestAttackMailHeaderInjection(t *testing.T) {
	opts := testOptions()
	opts.EmailVerification = true
	opts.OutboxDir = filepath.Join(t.TempDir(), "outbox")
	e := newEnv(t, opts)
	for _, body := range []string{
		`{"userName":"m1","email":"m1@example.org\r\nBcc: victim@example.org","password":"` + goodPassword + `"}`,
		`{"userName":"m2","email":"Admin <m2@example.org>","password":"` + goodPassword + `"}`,
		`{"userName":"m3","email":"m3@example.org, victim@example.org","password":"` + goodPassword + `"}`,
		`{"userName":"m4","email":"m4@example.org","displayName":"M\r\nBcc: victim@example.org","password":"` + goodPassword + `"}`,
	} {
		if resp, b := e.postJSON(t, body); resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d, want 422: %s", body, resp.StatusCode, b)
		}
	}
	files, _ := filepath.Glob(filepath.Join(opts.OutboxDir, "*.eml"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "victim@") {
			t.Errorf("%s mentions the injected recipient:\n%s", f, b)
		}
	}
	if n := e.userCount(t); n != 0 {
		t.Errorf("%d users stored, want 0", n)
	}
}

// TestAttackClaimAnotherPersonsEmail (issue 12): with e-mail verification off,
// carol registers with alice's address. An address is a user's only once
// verified: carol's copy stays unverified and identifies nobody, an address
// alice has verified cannot be registered again in any spelling, and carol's
// own verification link cannot take it from alice.
func TestAttackClaimAnotherPersonsEmail(t *testing.T) {
	e := newEnv(t, testOptions()) // EmailVerification off
	register := func(name, email string) (int, []byte) {
		body, _ := json.Marshal(map[string]string{"userName": name, "email": email, "password": goodPassword})
		resp, b := e.postJSON(t, string(body))
		return resp.StatusCode, b
	}
	// Before alice verifies, anyone may hold the address, unverified.
	if code, b := register("alice", "alice@example.com"); code != http.StatusCreated {
		t.Fatalf("alice registers: %d %s", code, b)
	}
	if code, b := register("carol", "alice@example.com"); code != http.StatusCreated {
		t.Fatalf("carol registers with an address nobody verified: %d %s", code, b)
	}
	ctx := context.Background()
	alice, _ := e.store.GetUserByName(ctx, "alice")
	carol, _ := e.store.GetUserByName(ctx, "carol")
	if carol.EmailVerified || alice.EmailVerified {
		t.Fatal("self-registration without verification stored a verified address")
	}
	if u, err := e.store.GetUserByVerifiedEmail(ctx, "alice@example.com"); err == nil {
		t.Fatalf("an unverified address identifies %s", u.UserName)
	}

	// alice verifies her address with the link sent to it.
	aliceTok := e.h.verifyToken(verifyClaims{UserID: alice.ID, Email: "alice@example.com", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, b := e.get(t, "/register/verify?token="+url.QueryEscape(aliceTok)); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice verifies: %d %s", resp.StatusCode, b)
	}
	if u, err := e.store.GetUserByVerifiedEmail(ctx, "ALICE@example.com"); err != nil || u.ID != alice.ID {
		t.Fatalf("alice's verified address finds %v %v", u, err)
	}

	// Nobody can register it again, in any spelling; nothing is stored.
	before := e.userCount(t)
	for _, addr := range []string{"alice@example.com", "Alice@Example.COM", " alice@example.com "} {
		code, b := register("mallory", addr)
		if code != http.StatusConflict || !strings.Contains(string(b), `"email"`) || strings.Contains(string(b), "alice\"") {
			t.Errorf("registering with alice's verified address %q: %d %s", addr, code, b)
		}
	}
	if n := e.userCount(t); n != before {
		t.Fatalf("refused registrations stored %d users", n-before)
	}

	// carol's own link to alice's address cannot verify it for her.
	carolTok := e.h.verifyToken(verifyClaims{UserID: carol.ID, Email: "alice@example.com", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, b := e.get(t, "/register/verify?token="+url.QueryEscape(carolTok)); resp.StatusCode != http.StatusConflict {
		t.Fatalf("carol's link for alice's address: %d %s", resp.StatusCode, b)
	}
	if u, _ := e.store.GetUser(ctx, carol.ID); u.EmailVerified {
		t.Fatal("carol verified alice's address")
	}
	if u, err := e.store.GetUserByVerifiedEmail(ctx, "alice@example.com"); err != nil || u.ID != alice.ID {
		t.Fatalf("alice's address now finds %v %v", u, err)
	}
}
