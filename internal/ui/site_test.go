package ui

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/thingid/thingid/internal/refusal"
)

var testPage = fstest.MapFS{"templates/p.html": {Data: []byte(
	`{{define "title"}}{{t "Sign in"}}{{end}}{{define "content"}}<p id="c">{{t "Signed in as %s" .}}</p>{{end}}`)}}

func render(t *testing.T, k Kit, p *Page, data any, mod func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", "/", nil)
	if mod != nil {
		mod(req)
	}
	rec := httptest.NewRecorder()
	k.Render(rec, req, http.StatusOK, p, data)
	return rec
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The reader's language: a chosen one (cookie) first, then the best match of
// Accept-Language, then the site's default; text without a translation stays
// English, and arguments are escaped.
func TestLanguages(t *testing.T) {
	k := Kit{AssetPrefix: "/assets/authn/"}
	p := k.Page(testPage, "templates/p.html")
	for _, c := range []struct {
		name, accept, cookie, want, lang string
	}{
		{"none", "", "", "<title>Sign in · thingid</title>", `lang="en"`},
		{"German", "de-AT,de;q=0.9,en;q=0.5", "", "<title>Anmelden · thingid</title>", `lang="de"`},
		{"English preferred", "en-GB,de;q=0.5", "", "<title>Sign in · thingid</title>", `lang="en"`},
		{"unknown", "ja", "", "<title>Sign in · thingid</title>", `lang="en"`},
		{"cookie wins", "en", "de", "<title>Anmelden · thingid</title>", `lang="de"`},
		{"bad cookie", "de", "xx-no", "<title>Anmelden · thingid</title>", `lang="de"`},
		{"huge header", strings.Repeat("de,", 200), "", "<title>Sign in · thingid</title>", `lang="en"`},
	} {
		rec := render(t, k, p, "<i>mallory</i>", func(r *http.Request) {
			if c.accept != "" {
				r.Header.Set("Accept-Language", c.accept)
			}
			if c.cookie != "" {
				r.AddCookie(&http.Cookie{Name: LanguageCookie, Value: c.cookie})
			}
		})
		body := rec.Body.String()
		if !strings.Contains(body, c.want) || !strings.Contains(body, c.lang) {
			t.Errorf("%s: want %s and %s in\n%s", c.name, c.want, c.lang, body)
		}
		if !strings.Contains(body, "&lt;i&gt;mallory&lt;/i&gt;") {
			t.Errorf("%s: the argument is not escaped:\n%s", c.name, body)
		}
		if !strings.Contains(rec.Header().Get("Vary"), "Accept-Language") {
			t.Errorf("%s: no Vary: Accept-Language", c.name)
		}
	}
	rec := httptest.NewRecorder()
	if defaultSite.SetLanguage(rec, "fr") || len(rec.Result().Cookies()) != 0 {
		t.Error("a language the site does not have was set")
	}
	rec = httptest.NewRecorder()
	if !defaultSite.SetLanguage(rec, "de") || len(rec.Result().Cookies()) != 1 || rec.Result().Cookies()[0].Value != "de" {
		t.Errorf("SetLanguage(de): %v", rec.Result().Cookies())
	}
}

// Every text the built-in pages translate has a German translation: a page
// must never come out half in one language. The catalogue keeps each
// message's %s.
func TestCataloguesCoverThePages(t *testing.T) {
	files, err := filepath.Glob("../*/templates/*.html")
	if err != nil || len(files) < 10 {
		t.Fatalf("templates: %v %v", files, err)
	}
	mails, _ := filepath.Glob("../*/templates/mail/*.txt")
	if len(mails) < 5 {
		t.Fatalf("e-mail templates: %v", mails)
	}
	files = append(files, mails...)
	files = append(files, "templates/layout.html")
	literal := regexp.MustCompile(`\{\{-?\s*t\s+"((?:[^"\\]|\\.)*)"`)
	de := defaultSite.catalogs["de"]
	var missing []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			src := strings.ReplaceAll(m[1], `\"`, `"`)
			if _, ok := de[src]; !ok {
				missing = append(missing, f+": "+src)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("messages/de.json lacks:\n%s", strings.Join(missing, "\n"))
	}
	if _, err := NewSite(SiteOptions{Templates: writeFiles(t, map[string]string{"messages/de.json": `{"Signed in as %s": "Angemeldet"}`})}); err == nil || !strings.Contains(err.Error(), "must keep its 1 %s") {
		t.Errorf("a translation that drops a %%s: %v", err)
	}
}

// The brand: product name, colours, logo and footer links from the
// configuration, and nothing that could run script.
func TestBrand(t *testing.T) {
	logo := filepath.Join(t.TempDir(), "logo.svg")
	os.WriteFile(logo, []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), 0o644)
	s, err := NewSite(SiteOptions{Brand: Brand{ProductName: "Acme <Home>", LogoFile: logo, Accent: "#aa0000",
		FooterLinks: []Link{{Text: "Privacy", URL: "https://acme.example/privacy"}, {Text: "Help", URL: "/help"}}}})
	if err != nil {
		t.Fatal(err)
	}
	k := Kit{AssetPrefix: "/assets/authn/", Site: s}
	body := render(t, k, k.Page(testPage, "templates/p.html"), "x", nil).Body.String()
	for _, want := range []string{"<title>Sign in · Acme &lt;Home&gt;</title>", `<img src="/assets/authn/logo"`, `href="/assets/authn/brand.css"`,
		`<a href="https://acme.example/privacy">Privacy</a>`, `<a href="/help">Help</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s:\n%s", want, body)
		}
	}
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		k.Assets().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	if rec := get("/assets/authn/brand.css"); !strings.Contains(rec.Body.String(), "--accent: #aa0000;") {
		t.Errorf("brand.css: %s", rec.Body)
	}
	if rec := get("/assets/authn/logo"); rec.Header().Get("Content-Type") != "image/svg+xml" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("logo: %v", rec.Header())
	}
	if rec := get("/assets/authn/style.css"); rec.Code != http.StatusOK {
		t.Errorf("style.css: %d", rec.Code)
	}
	for _, bad := range []SiteOptions{
		{Brand: Brand{Accent: "red; } body { display: none"}},
		{Brand: Brand{FooterLinks: []Link{{Text: "x", URL: "javascript:alert(1)"}}}},
		{Brand: Brand{FooterLinks: []Link{{Text: "x", URL: "//evil.example/"}}}},
		{Brand: Brand{FooterLinks: []Link{{Text: " ", URL: "/x"}}}},
		{Brand: Brand{LogoFile: "logo.exe"}},
		{DefaultLanguage: "fr"},
	} {
		if _, err := NewSite(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// The operator's templates replace pages and the layout; a broken one stops
// the start naming its file and line, one that names no page is reported,
// and one that fails at run time gives way to the built-in page.
func TestOverrides(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"authn/p.html":     `{{define "title"}}Mine{{end}}{{define "content"}}<p id="mine">{{t "Signed in as %s" .}}</p>{{end}}`,
		"messages/de.json": `{"Signed in as %s": "Hallo %s"}`,
	})
	s, err := NewSite(SiteOptions{Templates: dir})
	if err != nil {
		t.Fatal(err)
	}
	k := Kit{AssetPrefix: "/assets/authn/", Site: s}
	p := k.Page(testPage, "templates/p.html")
	body := render(t, k, p, "emma", func(r *http.Request) { r.Header.Set("Accept-Language", "de") }).Body.String()
	if !strings.Contains(body, `<p id="mine">Hallo emma</p>`) || !strings.Contains(body, "<title>Mine · thingid</title>") {
		t.Errorf("override:\n%s", body)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err: %v", err)
	}

	// The layout too.
	dir = writeFiles(t, map[string]string{"layout.html": `{{define "layout"}}<html><body class="acme">{{template "content" .}}</body></html>{{end}}`})
	s, _ = NewSite(SiteOptions{Templates: dir})
	k.Site = s
	if body := render(t, k, k.Page(testPage, "templates/p.html"), "emma", nil).Body.String(); !strings.Contains(body, `<body class="acme"><p id="c">Signed in as emma</p>`) {
		t.Errorf("layout override:\n%s", body)
	}

	// Broken: refused at start with file and line.
	dir = writeFiles(t, map[string]string{"authn/p.html": "{{define \"title\"}}x{{end}}\n{{define \"content\"}}{{if}}{{end}}"})
	if _, err := NewSite(SiteOptions{Templates: dir}); err == nil || !strings.Contains(err.Error(), "authn/p.html") || !strings.Contains(err.Error(), "p.html:2:") {
		t.Errorf("broken override: %v", err)
	}
	// Names no page.
	dir = writeFiles(t, map[string]string{"authn/signon.html": `{{define "title"}}x{{end}}{{define "content"}}x{{end}}`})
	s, err = NewSite(SiteOptions{Templates: dir})
	if err != nil {
		t.Fatal(err)
	}
	k.Site = s
	k.Page(testPage, "templates/p.html")
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "authn/signon.html replaces no page") {
		t.Errorf("unused override: %v", err)
	}
	// Fails at run time: the built-in page, and the error logged.
	dir = writeFiles(t, map[string]string{"authn/p.html": `{{define "title"}}x{{end}}{{define "content"}}{{.Nope}}{{end}}`})
	s, _ = NewSite(SiteOptions{Templates: dir})
	var logs bytes.Buffer
	k = Kit{AssetPrefix: "/assets/authn/", Site: s, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	rec := render(t, k, k.Page(testPage, "templates/p.html"), "emma", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `<p id="c">Signed in as emma</p>`) || !strings.Contains(logs.String(), "authn/p.html") {
		t.Errorf("failing override: %d %s\n%s", rec.Code, rec.Body, logs.String())
	}
}

// A broken e-mail override refuses the start with its file and line; one
// without a subject or body too; one that replaces no e-mail is reported.
func TestMailOverridesChecked(t *testing.T) {
	for name, c := range map[string]struct{ file, text, want string }{
		"syntax":     {"selfservice/password_reset.txt", "{{define \"subject\"}}x{{end}}\n{{define \"body\"}}{{.Link{{end}}", "password_reset.txt:2"},
		"no body":    {"selfservice/password_reset.txt", `{{define "subject"}}x{{end}}`, `defines no "body"`},
		"no subject": {"selfservice/verification.txt", `{{define "body"}}x{{end}}`, `defines no "subject"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewSite(SiteOptions{Templates: writeFiles(t, map[string]string{c.file: c.text})})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	s, err := NewSite(SiteOptions{Templates: writeFiles(t, map[string]string{"selfservice/welcome.txt": `{{define "subject"}}x{{end}}{{define "body"}}y{{end}}`})})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "selfservice/welcome.txt replaces no e-mail") {
		t.Fatalf("an override of no e-mail: %v", err)
	}
}

// ownRefusal is a package's own refusal type, as identity.ValidationError.
type ownRefusal struct{ refusal.FieldError }

// Text composed in Go (ui.Msg) and numbers are translated and printed as a
// template's {{t}} prints them; a string type (a role) is a source text;
// a refusal is said in the language, any other error in English.
func TestMessages(t *testing.T) {
	type role string
	s := defaultSite
	for _, c := range []struct {
		src  any
		args []any
		want string
	}{
		{"Certificates expiring within %s days", []any{30}, "Zertifikate, die innerhalb von 30 Tagen ablaufen"},
		{Msg("%s (%s)", "emma", Msg("guest")), nil, "emma (Gast)"},
		{role("guardian"), nil, "Haushaltsvorstand"},
		{Msg("the things in %s", "Küche"), nil, "die Dinge in Küche"},
		{Message{}, nil, ""},
		// A validator's refusal, bare or in a package's own type, wrapped.
		{refusal.New("name", "at most %d characters", 64), nil, "name: höchstens 64 Zeichen"},
		{refusal.New("name", "at most %d characters", 64).At(""), nil, "höchstens 64 Zeichen"},
		{fmt.Errorf("saving: %w", &ownRefusal{*refusal.New("serialNumber", "missing")}), nil, "serialNumber: fehlt"},
		{errors.New("not a refusal"), nil, "not a refusal"},
	} {
		if got := s.translateAny("de", c.src, c.args...); got != c.want {
			t.Errorf("%v %v: %q, want %q", c.src, c.args, got, c.want)
		}
	}
	if got := Msg("%s (%s)", "emma", Msg("guest")).String(); got != "emma (guest)" {
		t.Errorf("English: %q", got)
	}
}
