package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestPageRendersInLayoutWithAssets(t *testing.T) {
	kit := Kit{AssetPrefix: "/assets/x/"}
	fsys := fstest.MapFS{"p.html": {Data: []byte(`{{define "title"}}T{{end}}{{define "content"}}<p>{{.}}</p>{{end}}`)}}
	rec := httptest.NewRecorder()
	kit.Render(rec, httptest.NewRequest("GET", "/", nil), http.StatusTeapot, kit.Page(fsys, "p.html"), "<b>")
	body := rec.Body.String()
	if rec.Code != http.StatusTeapot || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	for _, s := range []string{"<title>T · thingid</title>", `href="/assets/x/style.css"`, "<p>&lt;b&gt;</p>"} {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %s:\n%s", s, body)
		}
	}
	rec = httptest.NewRecorder()
	kit.Assets().ServeHTTP(rec, httptest.NewRequest("GET", "/assets/x/style.css", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %d %v", rec.Code, rec.Header())
	}
	// A failing template is a clean 500, not half a page.
	rec = httptest.NewRecorder()
	bad := kit.Page(fstest.MapFS{"p.html": {Data: []byte(`{{define "title"}}{{end}}{{define "content"}}{{.Missing}}{{end}}`)}}, "p.html")
	kit.Render(rec, httptest.NewRequest("GET", "/", nil), http.StatusOK, bad, 42)
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "<html") {
		t.Fatalf("broken template: %d %s", rec.Code, rec.Body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	rec := httptest.NewRecorder()
	SecurityHeaders(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("%s missing", h)
		}
	}
}

// FormTarget adds a redirect target's origin to form-action, and nothing
// for a target that could smuggle another directive or source in.
func TestFormTarget(t *testing.T) {
	const self = "form-action 'self';"
	for target, want := range map[string]string{
		"https://app.example/cb?x=1":        "form-action 'self' https://app.example;",
		"http://127.0.0.1:8080/back":        "form-action 'self' http://127.0.0.1:8080;",
		"javascript:alert(1)":               self,
		"https://a.example; script-src *":   self,
		"https://a.example%3B/x":            self,
		"/relative":                         self,
		"data:text/html,x":                  self,
		"https://a.example 'unsafe-inline'": self,
	} {
		rec := httptest.NewRecorder()
		SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { FormTarget(w, target) })).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if got := rec.Header().Get("Content-Security-Policy"); !strings.Contains(got, want) || strings.Count(got, ";") != 5 {
			t.Errorf("%q: %s, want %s", target, got, want)
		}
	}
}

func TestCSRF(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, secure := range []bool{true, false} {
		c := NewCSRF(key, secure)
		rec := httptest.NewRecorder()
		tok := c.Token(rec, httptest.NewRequest("GET", "/", nil))
		cookies := rec.Result().Cookies()
		if len(cookies) != 1 || cookies[0].Name != c.CookieName() || !cookies[0].HttpOnly || cookies[0].Secure != secure ||
			cookies[0].SameSite != http.SameSiteStrictMode || (secure && cookies[0].Name != "__Host-thingid-csrf") {
			t.Fatalf("secure=%v: cookies %+v", secure, cookies)
		}
		req := httptest.NewRequest("POST", "/", nil)
		req.AddCookie(cookies[0])
		if !c.Valid(req, tok) {
			t.Fatal("own token refused")
		}
		// Reading the token again with the cookie gives the same token, no new cookie.
		rec = httptest.NewRecorder()
		if c.Token(rec, req) != tok || len(rec.Result().Cookies()) != 0 {
			t.Fatal("token not stable for one cookie")
		}
		if NewCSRF([]byte("another key, also thirty-two bytes"), secure).Valid(req, tok) {
			t.Fatal("a token made with another key accepted")
		}
		for _, bad := range []string{"", "x", tok[:len(tok)-1], strings.ToUpper(tok)} {
			if bad != tok && c.Valid(req, bad) {
				t.Fatalf("token %q accepted", bad)
			}
		}
		if c.Valid(httptest.NewRequest("POST", "/", nil), tok) {
			t.Fatal("token accepted without its cookie")
		}
	}
}

func TestCrossOrigin(t *testing.T) {
	cop := CrossOrigin("https://id.example.com/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	h := cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for origin, want := range map[string]int{"https://id.example.com": 200, "https://evil.example": 403} {
		req := httptest.NewRequest("POST", "http://internal:8443/x", nil)
		req.Header.Set("Origin", origin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Origin %s: %d, want %d", origin, rec.Code, want)
		}
	}
}
