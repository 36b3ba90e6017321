// Package ui is the page kit shared by the server-rendered pages of thingid
// (self-registration, sign-in): the base layout, the stylesheet, the security
// headers and the CSRF token. It knows nothing of users, sessions or the store.
package ui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

//go:embed templates/layout.html
var layoutFS embed.FS

//go:embed assets
var assetFS embed.FS

// Kit renders the pages of one component. AssetPrefix is where that component
// serves Assets, a path under /assets/ ending in "/" (for example
// "/assets/selfservice/"); each component has its own so that components can
// be mounted independently on one mux.
type Kit struct {
	AssetPrefix string
	Log         *slog.Logger // nil: slog.Default()
}

// Assets serves the kit's static files (style.css) under k.AssetPrefix.
func (k Kit) Assets() http.Handler {
	sub, _ := fs.Sub(assetFS, "assets") // the directory is embedded above
	return http.StripPrefix(k.AssetPrefix, http.FileServerFS(sub))
}

// Page parses a page template from fsys into a copy of the base layout. The
// page defines "title" and "content"; it may call {{asset "style.css"}} to link
// a file of Assets. It panics on a broken template (templates are embedded,
// so that is a programming error caught by any test that renders the page).
func (k Kit) Page(fsys fs.FS, file string) *template.Template {
	layout := template.New("layout").Funcs(template.FuncMap{
		"asset": func(name string) string { return k.AssetPrefix + name },
	})
	layout = template.Must(layout.ParseFS(layoutFS, "templates/layout.html"))
	return template.Must(layout.ParseFS(fsys, file))
}

// Render writes a whole page or, if the template fails, a plain 500: the page
// is rendered into memory first so that an error never leaves half a page.
func (k Kit) Render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		log := k.Log
		if log == nil {
			log = slog.Default()
		}
		log.Error("ui: rendering page", "err", err)
		http.Error(w, "internal error while rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
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
