package selfservice

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// assetPrefix is namespaced so that other components can serve their own /assets/.
const assetPrefix = "/assets/selfservice/"

func assetHandler() http.Handler {
	sub, _ := fs.Sub(assetFS, "assets") // the directory is embedded above
	return http.StripPrefix(assetPrefix, http.FileServerFS(sub))
}

// pages are the HTML templates, each rendered inside templates/layout.html.
type pages struct {
	form, done, message *template.Template
}

func parsePages() pages {
	layout := template.Must(template.ParseFS(templateFS, "templates/layout.html"))
	page := func(name string) *template.Template {
		return template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name))
	}
	return pages{form: page("register.html"), done: page("done.html"), message: page("message.html")}
}

// messagePage is a page that only says something, with an optional link back.
type messagePage struct {
	Title, Text, Link string
}

// render writes a whole page or, if the template fails, a plain 500: the page is
// rendered into memory first so that an error never leaves half a page.
func (h *Handler) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		h.log.Error("selfservice: rendering page", "err", err)
		http.Error(w, "internal error while rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
