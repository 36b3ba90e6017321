// Package ui is the page kit shared by the server-rendered pages of thingid
// (self-registration, sign-in): the base layout, the stylesheet, the security
// headers and the CSRF token. It knows nothing of users, sessions or the store.
package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
)

//go:embed templates/layout.html
var layoutFS embed.FS

//go:embed assets
var assetFS embed.FS

// Kit renders the pages of one component. AssetPrefix is where that component
// serves Assets, a path under /assets/ ending in "/" (for example
// "/assets/selfservice/"); each component has its own so that components can
// be mounted independently on one mux. Its last element names the component
// for template overrides (selfservice/register.html). Site is the brand,
// overrides and languages (nil: the built-in ones).
type Kit struct {
	AssetPrefix string
	Log         *slog.Logger // nil: slog.Default()
	Site        *Site
}

func (k Kit) site() *Site {
	if k.Site == nil {
		return defaultSite
	}
	return k.Site
}

func (k Kit) log() *slog.Logger {
	if k.Log == nil {
		return slog.Default()
	}
	return k.Log
}

// component is the name of the component in override paths.
func (k Kit) component() string {
	return path.Base(strings.TrimSuffix(k.AssetPrefix, "/"))
}

// Assets serves the kit's static files (style.css) under k.AssetPrefix, and
// the site's brand.css and logo.
func (k Kit) Assets() http.Handler {
	sub, _ := fs.Sub(assetFS, "assets") // the directory is embedded above
	files := http.StripPrefix(k.AssetPrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, k.AssetPrefix); ok && k.site().brandAssets(name, w) {
			return
		}
		files.ServeHTTP(w, r)
	})
}

// Page is a page template parsed once per language of the site, in the
// built-in version and, when the operator's directory has one, theirs.
type Page struct {
	name     string // COMPONENT/PAGE.html, for logs
	builtIn  map[string]*template.Template
	operator map[string]*template.Template // nil: no override
}

// Page parses a page template from fsys (with the partials it uses) into a
// copy of the base layout. The
// page defines "title" and "content"; it may call {{asset "style.css"}} to
// link a file of Assets, {{t "English text" args...}} for text in the
// reader's language, and {{brand}} for the site's Brand. It panics on a
// broken built-in template (templates are embedded, so that is a programming
// error caught by any test that renders the page); a broken override was
// refused by NewSite, and is reported by Site.Err if it fails here.
func (k Kit) Page(fsys fs.FS, file string, partials ...string) *Page {
	s := k.site()
	p := &Page{name: k.override(file), builtIn: map[string]*template.Template{}}
	files := append([]string{file}, partials...)
	// The operator's version of each file, where the directory has one.
	var over []string
	if s.overrides != nil {
		for _, f := range files {
			if exists(s.overrides, k.override(f)) {
				over = append(over, k.override(f))
			}
		}
		if len(over) > 0 || exists(s.overrides, "layout.html") {
			p.operator = map[string]*template.Template{}
		}
	}
	for _, lang := range s.Languages() {
		layout := template.Must(template.New("layout").Funcs(s.funcs(k.AssetPrefix, lang)).ParseFS(layoutFS, "templates/layout.html"))
		p.builtIn[lang] = template.Must(template.Must(layout.Clone()).ParseFS(fsys, files...))
		if p.operator == nil {
			continue
		}
		t, err := k.operatorPage(layout, fsys, files)
		if err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
			p.operator = nil
			continue
		}
		p.operator[lang] = t
	}
	s.mu.Lock()
	for _, name := range over {
		s.used[name] = true
	}
	s.mu.Unlock()
	return p
}

// override is the name of file's replacement in the operator's directory.
func (k Kit) override(file string) string { return k.component() + "/" + path.Base(file) }

// operatorPage parses the page with the operator's layout and files in place
// of the built-in ones where the directory has them.
func (k Kit) operatorPage(layout *template.Template, fsys fs.FS, files []string) (*template.Template, error) {
	s := k.site()
	t, err := layout.Clone()
	if err != nil {
		return nil, err
	}
	if exists(s.overrides, "layout.html") {
		if t, err = t.ParseFS(s.overrides, "layout.html"); err != nil {
			return nil, fmt.Errorf("template layout.html: %w", err)
		}
	}
	for _, f := range files {
		if name := k.override(f); exists(s.overrides, name) {
			t, err = t.ParseFS(s.overrides, name)
		} else {
			t, err = t.ParseFS(fsys, f)
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", k.override(f), err)
		}
	}
	return t, nil
}

func exists(fsys fs.FS, name string) bool {
	_, err := fs.Stat(fsys, name)
	return err == nil
}

// funcs are the functions every page may call, for one language.
func (s *Site) funcs(assetPrefix, lang string) template.FuncMap {
	return template.FuncMap{
		"asset": func(name string) string { return assetPrefix + name },
		"t":     func(src any, args ...any) string { return s.translateAny(lang, src, args...) },
		"brand": func() Brand { return s.brand },
		"logo":  func() bool { return s.logo != nil },
		"lang":  func() string { return lang },
	}
}

// Translator is the catalogue's translation into r's language, for text a
// component composes in Go before it reaches a template (a rule in words).
func (k Kit) Translator(r *http.Request) func(src string, args ...any) string {
	s, lang := k.site(), k.site().Language(r)
	return func(src string, args ...any) string { return s.translate(lang, src, args...) }
}

// Render writes page p for the request r, in r's language (Site.Language).
// The page is rendered into memory first so that an error never leaves
// half a page: an operator's template that fails is logged and the built-in
// one rendered instead, and if that fails too the answer is a plain 500.
func (k Kit) Render(w http.ResponseWriter, r *http.Request, status int, p *Page, data any) {
	lang := k.site().Language(r)
	var buf bytes.Buffer
	if t := p.operator[lang]; t != nil {
		err := t.ExecuteTemplate(&buf, "layout", data)
		if err == nil {
			k.write(w, status, buf.Bytes())
			return
		}
		k.log().Error("ui: the operator's template failed; showing the built-in page", "page", p.name, "err", err)
		buf.Reset()
	}
	if err := p.builtIn[lang].ExecuteTemplate(&buf, "layout", data); err != nil {
		k.log().Error("ui: rendering page", "page", p.name, "err", err)
		http.Error(w, "internal error while rendering the page", http.StatusInternalServerError)
		return
	}
	k.write(w, status, buf.Bytes())
}

func (k Kit) write(w http.ResponseWriter, status int, page []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Accept-Language, Cookie")
	w.WriteHeader(status)
	_, _ = w.Write(page)
}

// contentPolicy is the Content-Security-Policy of pages whose forms may lead
// to formAction: no script at all; styles only from our own asset file.
func contentPolicy(formAction string) string {
	return "default-src 'none'; style-src 'self'; img-src 'self'; form-action " + formAction + "; frame-ancestors 'none'; base-uri 'none'"
}

// FormTarget lets the forms of the page w answers lead to the origin of
// target as well as to this site. CSP form-action also governs the redirects
// that follow a form submission (browsers block them otherwise), so a page
// whose form answers with a redirect to another site (a client's validated
// redirect URI) needs that site's origin. A target that is not an absolute
// http(s) URL changes nothing.
func FormTarget(w http.ResponseWriter, target string) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(u.Host, " ;,'\"") {
		return
	}
	w.Header().Set("Content-Security-Policy", contentPolicy("'self' "+u.Scheme+"://"+u.Host))
}

// SecurityHeaders sets what every response of a page component carries (OWASP
// Secure Headers Project).
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentPolicy("'self'"))
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		// Links may carry tokens in the query (e-mail verification): never leak
		// them in Referer.
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// CrossOrigin returns Go's cross-origin request protection (it refuses
// non-safe requests a browser marks cross-site or same-site, or whose Origin is
// not the Host), trusting also the origin of the public baseURL when set (behind
// a proxy that rewrites Host). deny answers refused requests.
func CrossOrigin(baseURL string, deny http.Handler) *http.CrossOriginProtection {
	cop := http.NewCrossOriginProtection()
	if u, err := url.Parse(strings.TrimSuffix(baseURL, "/")); err == nil && u.Scheme != "" && u.Host != "" {
		_ = cop.AddTrustedOrigin(u.Scheme + "://" + u.Host)
	}
	cop.SetDenyHandler(deny)
	return cop
}
