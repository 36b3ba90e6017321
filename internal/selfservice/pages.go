package selfservice

import (
	"embed"
	"net/http"

	"github.com/thingid/thingid/internal/ui"
)

//go:embed templates/*.html
var templateFS embed.FS

// assetPrefix is namespaced so that other components can serve their own /assets/.
const assetPrefix = "/assets/selfservice/"

// pages are the HTML templates, each rendered inside the ui layout.
type pages struct {
	form, done, message *ui.Page
}

func parsePages(kit ui.Kit) pages {
	page := func(name string) *ui.Page { return kit.Page(templateFS, "templates/"+name) }
	return pages{form: page("form.html"), done: page("done.html"), message: page("message.html")}
}

// messagePage is a page that only says something, with an optional link back.
type messagePage struct {
	Title, Text, Link, LinkText string
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, t *ui.Page, data any) {
	h.kit.Render(w, r, status, t, data)
}
