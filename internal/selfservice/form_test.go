package selfservice

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var csrfFieldRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formToken loads the form like a browser and returns its hidden CSRF token.
func (e *env) formToken(t *testing.T) string {
	t.Helper()
	resp, body := e.get(t, "/register")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /register = %d", resp.StatusCode)
	}
	m := csrfFieldRE.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field in the form:\n%s", body)
	}
	return string(m[1])
}

func (e *env) postForm(t *testing.T, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/register", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, body := e.do(t, req)
	return resp, string(body)
}

func registrationForm(token, user, pw, confirm string) url.Values {
	return url.Values{
		"csrf": {token}, "userName": {user}, "email": {user + "@example.org"},
		"displayName": {"Form User"}, "password": {pw}, "passwordConfirm": {confirm},
	}
}

func TestFormPage(t *testing.T) {
	e := newBareEnv(t, testOptions())
	resp, body := e.get(t, "/register")
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Content-Type":            "text/html; charset=utf-8",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	page := string(body)
	for _, s := range []string{`<label for="userName">`, `<label for="email">`, `<label for="displayName">`, `<label for="password">`, `<label for="passwordConfirm">`,
		`autocomplete="new-password"`, `method="post"`} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %s", s)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "style=") {
		t.Error("page has inline script or style, which the CSP forbids")
	}
	if resp, css := e.get(t, "/assets/selfservice/style.css"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || len(css) == 0 {
		t.Errorf("stylesheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestFormRegistration(t *testing.T) {
	e := newEnv(t, testOptions())
	tok := e.formToken(t)

	resp, page := e.postForm(t, registrationForm(tok, "erin", goodPassword, "purple monkey dishwasher?"))
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(page, `id="passwordConfirm-error"`) {
		t.Fatalf("mismatched confirmation: %d, want 422 with an error at passwordConfirm:\n%s", resp.StatusCode, page)
	}
	if !strings.Contains(page, `value="erin"`) || strings.Contains(page, goodPassword) {
		t.Fatal("the form must keep the user name and must not echo the password")
	}

	resp, page = e.postForm(t, registrationForm(tok, "erin", "123456789012345", "123456789012345"))
	if resp.StatusCode != http.StatusUnprocessableEntity || !regexp.MustCompile(`id="password-error">.*avoid repeated characters`).MatchString(page) {
		t.Fatalf("weak password: %d, want 422 with the advice next to the password field:\n%s", resp.StatusCode, page)
	}
	if !strings.Contains(page, `aria-invalid="true" aria-describedby="password-hint password-error"`) {
		t.Error("the password input is not marked invalid and linked to its error")
	}

	resp, page = e.postForm(t, registrationForm(tok, "erin", goodPassword, goodPassword))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/register/done" {
		t.Fatalf("registration: %d %s, want 303 to /register/done:\n%s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	if _, err := e.store.GetUserByName(context.Background(), "ERIN"); err != nil {
		t.Fatalf("user not stored: %v", err)
	}
	if resp, done := e.get(t, "/register/done"); resp.StatusCode != http.StatusOK || !strings.Contains(string(done), "Your account has been created") {
		t.Fatalf("confirmation page: %d %s", resp.StatusCode, done)
	}

	resp, page = e.postForm(t, registrationForm(tok, "Erin", goodPassword, goodPassword))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(page, "this user name is taken") {
		t.Fatalf("taken name: %d, want 409 saying so:\n%s", resp.StatusCode, page)
	}
}

// CSRF: http.CrossOriginProtection refuses cross-site browser requests; the
// signed double-submit token refuses forms from browsers without Sec-Fetch-Site.
// The bare env has no identity service, so a request that got through would fail.
func TestCrossSiteRequestsRefused(t *testing.T) {
	e := newBareEnv(t, testOptions())
	tok := e.formToken(t)
	form := registrationForm(tok, "mallory", goodPassword, goodPassword)

	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"}, // a sibling subdomain is not us either
		{"Origin", "https://evil.example"},
		{"Origin", "null"},
	} {
		resp, page := e.postForm(t, form, h...)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Request refused") {
			t.Errorf("form with %s: %s: %d, want 403:\n%s", h[0], h[1], resp.StatusCode, page)
		}
		resp, body := e.postJSON(t, `{"userName":"mallory","email":"m@example.org","password":"`+goodPassword+`"}`, h...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("JSON with %s: %s: %d, want 403", h[0], h[1], resp.StatusCode)
		} else {
			decodeProblem(t, resp, body)
		}
	}

	// A browser without Sec-Fetch-Site and Origin passes CrossOriginProtection;
	// the token is what stops a forged form then.
	plain := &http.Client{CheckRedirect: e.client.CheckRedirect} // no cookie jar: the attacker's page cannot send our cookie's pair
	for name, f := range map[string]url.Values{
		"no token":      registrationForm("", "mallory", goodPassword, goodPassword),
		"foreign token": registrationForm(tok, "mallory", goodPassword, goodPassword),
	} {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/register", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "thingid-csrf", Value: b64.EncodeToString(make([]byte, 32))})
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, resp.StatusCode)
		}
	}
	// Our own client, with its cookie but a tampered token.
	tampered := []byte(tok)
	tampered[3] ^= 1
	if resp, _ := e.postForm(t, registrationForm(string(tampered), "mallory", goodPassword, goodPassword)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("tampered token: %d, want 403", resp.StatusCode)
	}
}

// A password policy's advice, with its arguments, is said in the page's
// language, next to the field and in the summary; the API says it in English.
func TestFormRefusalInTheReadersLanguage(t *testing.T) {
	e := newEnv(t, testOptions())
	tok := e.formToken(t)
	resp, page := e.postForm(t, registrationForm(tok, "erin", "kurz", "kurz"), "Accept-Language", "de")
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("short password: %d, want 422:\n%s", resp.StatusCode, page)
	}
	if !regexp.MustCompile(`id="password-error">.*verwenden Sie mindestens \d+ Zeichen`).MatchString(page) {
		t.Errorf("the advice next to the password field is not in German:\n%s", page)
	}
	if !regexp.MustCompile(`<a href="#password">Passwort: verwenden Sie mindestens \d+ Zeichen`).MatchString(page) {
		t.Errorf("the summary does not say label and advice in German:\n%s", page)
	}
	if strings.Contains(page, "use at least") {
		t.Error("English advice on a German page")
	}
	resp, body := e.postJSON(t, `{"userName":"erin","email":"erin@example.org","password":"kurz"}`, "Accept-Language", "de")
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "use at least") {
		t.Errorf("API: %d %s, want 422 with the English advice", resp.StatusCode, body)
	}
}
