package selfservice

import (
	"embed"
	"net/http"

	"github.com/thingid/thingid/internal/ui"
)

//go:embed templates/*.html templates/mail/*.txt
var templateFS embed.FS

// assetPrefix is namespaced so that other components can serve their own /assets/.
const assetPrefix = "/assets/selfservice/"

// pages are the HTML templates, each rendered inside the ui layout.
type pages struct {
	form, done, message *ui.Page
}

// mailKinds are the e-mails the handler sends, each the name of its
// template (templates/mail/KIND.txt, overridden by selfservice/KIND.txt)
// and the label of its metric.
var mailKinds = []string{"verification", "address_change", "address_change_notice", "password_reset", "password_changed_notice"}

func parseMails(kit ui.Kit) map[string]*ui.Mail {
	m := map[string]*ui.Mail{}
	for _, kind := range mailKinds {
		m[kind] = kit.Mail(templateFS, "templates/mail/"+kind+".txt")
	}
	return m
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
