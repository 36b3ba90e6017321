package selfservice

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
)

const goodPassword = "purple monkey dishwasher"

func TestRegisterJSON(t *testing.T) {
	e := newEnv(t, testOptions())
	resp, body := e.postJSON(t, `{"userName":"Alice","email":"alice@Example.ORG","displayName":"Alice Liddell","password":"`+goodPassword+`"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want 201; body %s", resp.StatusCode, body)
	}
	var got struct {
		ID, UserName  string
		EmailVerified bool
	}
	if err := json.Unmarshal(body, &got); err != nil || got.ID == "" || got.UserName != "Alice" {
		t.Fatalf("body %s (%v), want the new user's id and userName", body, err)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}

	u, err := e.store.GetUserByName(context.Background(), "alice")
	if err != nil {
		t.Fatalf("stored user: %v", err)
	}
	if u.ID != got.ID || u.DisplayName != "Alice Liddell" || len(u.Emails) != 1 || u.Emails[0].Value != "alice@example.org" || u.EmailVerified {
		t.Fatalf("stored user %+v does not match the registration", u)
	}
	if ok, err := password.Verify(u.PasswordHash, goodPassword); !ok || err != nil {
		t.Fatalf("stored hash does not verify the password (%v)", err)
	}
	recs, err := e.store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindUser, ID: u.ID}})
	if err != nil || len(recs) != 1 || recs[0].Actor != "selfservice" || recs[0].Action != "user.create" {
		t.Fatalf("audit %+v (%v), want one user.create by selfservice", recs, err)
	}
}

func TestRegisterJSONRefusesBadInput(t *testing.T) {
	e := newEnv(t, testOptions())
	if resp, body := e.postJSON(t, `{"userName":"Bob","email":"bob@example.org","password":"`+goodPassword+`"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("registering Bob: %d %s", resp.StatusCode, body)
	}
	reg := func(user, email, pw string) string {
		b, _ := json.Marshal(registration{UserName: user, Email: email, Password: pw})
		return string(b)
	}
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		fields      []string
	}{
		{"common password", "", reg("carol", "carol@example.org", "correcthorsebatterystaple"), 422, []string{"password"}},
		{"common password padded", "", reg("carol", "carol@example.org", "Password1234567!"), 422, []string{"password"}},
		{"short password", "", reg("carol", "carol@example.org", "Tr0ub4dor&3"), 422, []string{"password"}},
		{"sequence password", "", reg("carol", "carol@example.org", "123456789012345"), 422, []string{"password"}},
		{"password is the user name", "", reg("carol.lewis.writer", "carol@example.org", "Carol.Lewis.Writer"), 422, []string{"password"}},
		{"password is the e-mail address", "", reg("carol", "carol.lewis@example.org", "carol.lewis@example.org"), 422, []string{"password"}},
		{"missing user name", "", reg("", "carol@example.org", goodPassword), 422, []string{"userName"}},
		{"blank user name", "", reg("   ", "carol@example.org", goodPassword), 422, []string{"userName"}},
		{"missing e-mail", "", reg("carol", "", goodPassword), 422, []string{"email"}},
		{"missing password", "", reg("carol", "carol@example.org", ""), 422, []string{"password"}},
		{"everything missing", "", `{}`, 422, []string{"userName", "email", "password"}},
		{"null body", "", `null`, 422, []string{"userName", "email", "password"}},
		{"bad e-mail", "", reg("carol", "carol at example.org", goodPassword), 422, []string{"email"}},
		{"e-mail with a display name", "", reg("carol", "Carol <carol@example.org>", goodPassword), 422, []string{"email"}},
		{"control character in user name", "", reg("car\u0007ol", "carol@example.org", goodPassword), 422, []string{"userName"}},
		{"user name too long", "", reg(strings.Repeat("c", 257), "carol@example.org", goodPassword), 422, []string{"userName"}},
		{"taken name in other case", "", reg("BOB", "bob2@example.org", goodPassword), 409, []string{"userName"}},
		{"unknown field", "", `{"userName":"carol","email":"carol@example.org","password":"` + goodPassword + `","admin":true}`, 400, []string{"admin"}},
		{"status smuggled in", "", `{"userName":"carol","email":"carol@example.org","password":"` + goodPassword + `","emailVerified":true}`, 400, []string{"emailVerified"}},
		{"wrong type", "", `{"userName":"carol","email":"carol@example.org","password":123456789012345}`, 400, []string{"password"}},
		{"not an object", "", `["carol"]`, 400, nil},
		{"two objects", "", reg("carol", "carol@example.org", goodPassword) + `{}`, 400, nil},
		{"truncated", "", `{"userName":"carol"`, 400, nil},
		{"empty body", "", ``, 400, nil},
		{"oversized body", "", `{"userName":"carol","email":"carol@example.org","displayName":"` + strings.Repeat("x", maxBody) + `","password":"` + goodPassword + `"}`, 413, nil},
		{"form encoded", "application/x-www-form-urlencoded", "userName=carol&email=carol%40example.org&password=purple+monkey+dishwasher", 415, nil},
		{"text/plain", "text/plain", reg("carol", "carol@example.org", goodPassword), 415, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.contentType != "" {
				header = []string{"Content-Type", tt.contentType}
			}
			resp, body := e.postJSON(t, tt.body, header...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			p := decodeProblem(t, resp, body)
			if len(p.Errors) != len(tt.fields) {
				t.Fatalf("errors %+v, want one for each of %v", p.Errors, tt.fields)
			}
			for i, f := range tt.fields {
				if p.Errors[i].Field != f || p.Errors[i].Pointer != "/"+f || p.Errors[i].Detail == "" {
					t.Errorf("error %d = %+v, want field %s with a detail", i, p.Errors[i], f)
				}
			}
			if n := e.userCount(t); n != 1 {
				t.Fatalf("%d users stored, want only Bob", n)
			}
		})
	}
}

func TestRegisterJSONTakenNameSaysSo(t *testing.T) {
	e := newEnv(t, testOptions())
	body := `{"userName":"dave","email":"dave@example.org","password":"` + goodPassword + `"}`
	if resp, b := e.postJSON(t, body); resp.StatusCode != http.StatusCreated {
		t.Fatalf("first registration: %d %s", resp.StatusCode, b)
	}
	resp, b := e.postJSON(t, strings.Replace(body, "dave", "Dave", 1))
	p := decodeProblem(t, resp, b)
	if resp.StatusCode != http.StatusConflict || len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Detail, "this user name is taken") {
		t.Fatalf("got %d %+v, want 409 saying the user name is taken", resp.StatusCode, p)
	}
}

// TestDisabledIsNotFound: registration off answers 404 on its routes; the
// stylesheet stays, for the account's pages.
func TestDisabledIsNotFound(t *testing.T) {
	opts := testOptions()
	opts.Enabled = false
	e := newBareEnv(t, opts)
	for _, c := range []struct{ method, path string }{
		{"GET", "/register"}, {"POST", "/register"}, {"POST", "/api/v1/register"},
		{"GET", "/register/verify?token=x"},
	} {
		req, _ := http.NewRequest(c.method, e.srv.URL+c.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if resp, _ := e.do(t, req); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s = %d, want 404", c.method, c.path, resp.StatusCode)
		}
	}
}

// FuzzRegisterJSON feeds arbitrary bodies to the JSON endpoint backed by the real
// identity service and store: the answer is never a 500 and never a panic.
func FuzzRegisterJSON(f *testing.F) {
	for _, seed := range []string{
		`{"userName":"fuzz","email":"fuzz@example.org","displayName":"F","password":"` + goodPassword + `"}`,
		`{"userName":"fuzz","email":"fuzz@example.org","password":"short"}`,
		`{"userName":"\u0000","email":"@","password":"` + goodPassword + `"}`,
		`{"userName":1}`, `{"x":{}}`, `[]`, `null`, `{`, `{"userName":"a"}{"userName":"b"}`,
		"{\"userName\":\"\xff\xfe\",\"email\":\"a@b.c\",\"password\":\"\xff" + goodPassword + "\"}",
	} {
		f.Add(seed)
	}
	e := newEnv(f, testOptions())
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/register", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.srv.Config.Handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if rec.Code != http.StatusCreated && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("status %d without problem details for %q", rec.Code, body)
		}
	})
}
