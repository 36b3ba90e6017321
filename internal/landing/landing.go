// Package landing is the page at "/": what the platform offers whoever opens
// it (signing in, registering, their account) and where its machine-readable
// documents are. It reads who is signed in through its own small interface
// and changes nothing; every other unknown path stays a 404.
package landing

import (
	"embed"
	"errors"
	"log/slog"
	"net/http"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

//go:embed templates/landing.html
var templates embed.FS

const assetPrefix = "/assets/landing/"

// Sessions tells who is signed in (authn.Sessions): the user, or
// authn.ErrNoSession, or authn.ErrPasswordChangeRequired.
type Sessions interface {
	User(r *http.Request) (*store.User, error)
}

// Options configure the page.
type Options struct {
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site     *ui.Site
	Sessions Sessions
	// Registration: self-registration is open (registration.enabled), so
	// the page offers it.
	Registration bool
	// DocsURL is where the documentation is.
	DocsURL string
	Logger  *slog.Logger // nil: slog.Default()
}

// Page is the landing page.
type Page struct {
	opts Options
	log  *slog.Logger
	kit  ui.Kit
	page *ui.Page
}

// New returns the page.
func New(o Options) *Page {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	kit := ui.Kit{AssetPrefix: assetPrefix, Log: log, Site: o.Site}
	return &Page{opts: o, log: log, kit: kit, page: kit.Page(templates, "templates/landing.html")}
}

// Register mounts the page at "/" exactly, and its stylesheet.
func (p *Page) Register(mux routes.Mux) {
	mux.Handle("GET /{$}", ui.SecurityHeaders(http.HandlerFunc(p.serve)))
	mux.Handle("GET "+assetPrefix, p.kit.Assets())
}

// view is what the template shows.
type view struct {
	UserName     string // signed in
	MustChange   bool   // signed in with a one-time password
	Registration bool
	DocsURL      string
}

func (p *Page) serve(w http.ResponseWriter, r *http.Request) {
	v := view{Registration: p.opts.Registration, DocsURL: p.opts.DocsURL}
	u, err := p.opts.Sessions.User(r)
	switch {
	case err == nil:
		v.UserName = u.UserName
	case errors.Is(err, authn.ErrPasswordChangeRequired):
		v.MustChange = true
	case !errors.Is(err, authn.ErrNoSession):
		// The page still offers signing in; the account link waits for
		// the store to answer again.
		p.log.Error("landing: reading the session", "err", err)
	}
	p.kit.Render(w, r, http.StatusOK, p.page, v)
}
