// Package console is the admin console at /admin: server-rendered pages for
// administrators (every change) and support staff (read only) to find things
// and users, see a thing's certificates, grants and connection, act on them,
// and read the audit log. It changes nothing itself: every change goes
// through the service the APIs use (identity, certauth, oauth, the broker),
// reached through the small interfaces below; it never touches SQL.
package console

import (
	"context"
	"embed"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Path is where the console is served.
const Path = "/admin"

// The staff groups (authn.AdminGroup, authn.SupportGroup): console does not
// import authn, the group names are the contract.
const (
	AdminGroup   = "administrators"
	SupportGroup = "support"
)

const (
	assetPrefix = "/assets/console/"
	// maxForm bounds a posted form.
	maxForm = 16 << 10
	// pageSize is the rows of one page of a search.
	pageSize = 50
)

// Sessions tells who signed in in the browser (*authn.Sessions).
type Sessions interface {
	User(r *http.Request) (*store.User, error)
	// EndUserSessions signs a user out everywhere, audited for actor.
	EndUserSessions(ctx context.Context, actor, userID string) error
}

// Staff tells which of groups a user is an active direct member of
// (*authn.Admins); an error when none.
type Staff interface {
	MemberOf(ctx context.Context, u *store.User, groups ...string) (string, error)
}

// Identities reads and changes users and things (*identity.Service: it
// validates, audits and publishes every change).
type Identities interface {
	ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	UpdateThing(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Thing) error) (*store.Thing, error)
	ListUsers(ctx context.Context, q store.Query) ([]*store.User, int, error)
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByName(ctx context.Context, name string) (*store.User, error)
	CreateUser(ctx context.Context, actor string, u *store.User, pw string) (*store.User, error)
	UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error)
	ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)
	GetGroup(ctx context.Context, id string) (*store.Group, error)
}

// Certificates revokes things' certificates (*certauth.Checker: stored,
// audited, refused on every node at once).
type Certificates interface {
	Revoke(ctx context.Context, actor string, rs ...certauth.Revocation) ([]*store.RevokedCert, error)
	// Revoked tells whether the certificate with thumbprint x5t (base64url
	// SHA-256 of its DER) is revoked.
	Revoked(x5t string) bool
}

// Grants revokes grants and unlinks things from their owners (the
// authorization server: audited, published so that tokens stop at once).
type Grants interface {
	RevokeUserGrant(ctx context.Context, actor, userID, grantID string) error
	Unlink(ctx context.Context, actor, userID, thingID string) error
}

// CWTs lists and revokes the CWTs (ACE's access tokens) issued to a thing
// (*ace.Server: a revocation is stored, audited and published, so that the
// CoAP gateway ends the sessions holding the token at once).
type CWTs interface {
	IssuedCWTs(ctx context.Context, thingID string) ([]ace.Issued, error)
	RevokeIssued(ctx context.Context, actor, thingID string, cti []byte) error
}

// PasswordResets mails a user a link to choose a new password (the
// self-service's forgot-password mail); ErrNoVerifiedAddress when the user
// has none.
type PasswordResets interface {
	SendPasswordReset(ctx context.Context, actor, userID string) error
}

// ErrNoVerifiedAddress: the user has no verified e-mail address to mail.
var ErrNoVerifiedAddress = errors.New("the user has no verified e-mail address")

// Connection is one MQTT session of the broker; Thing is the id of the
// thing it authenticated as, "" for others.
type Connection struct {
	ClientID, Thing, Listener, Remote string
	Connected                         bool
}

// Connections lists and ends MQTT sessions (the broker's admin functions).
type Connections interface {
	Connections() []Connection
	Disconnect(clientID string) bool
}

// Store is what the console reads directly (store.Store): grants, where a
// thing is placed, certificates expiring soon, factory batches and the
// things of a CA, the audit log (and the records of its own reads,
// disconnects and batch revocations, which no service writes).
type Store interface {
	ListGrants(ctx context.Context, f store.GrantFilter) ([]*store.Grant, error)
	GetClient(ctx context.Context, id string) (*store.Client, error)
	GetPlacement(ctx context.Context, thingID string) (*store.Placement, error)
	ListExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]store.ThingCertificate, int, error)
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error)
	AppendAudit(ctx context.Context, recs ...store.AuditRecord) error
	GetFactoryBatch(ctx context.Context, id string) (*store.FactoryBatch, error)
	ListFactoryBatches(ctx context.Context, offset, limit int) ([]*store.FactoryBatch, int, error)
	ListFactoryBatchThings(ctx context.Context, batchID string, offset, limit int) ([]*store.Thing, int, error)
	ThingFactoryBatches(ctx context.Context, thingID string) ([]*store.FactoryBatch, error)
	CountThingsOfCAs(ctx context.Context, cas []*store.ManufacturerCA) (map[string]int, error)
}

// Options configures the console. Connections may be nil (no broker).
type Options struct {
	// Site is the pages' brand (nil: the built-in one); the console's own text is English.
	Site         *ui.Site
	BaseURL      string
	CSRFKey      []byte // at least 32 bytes
	CursorKey    []byte // keys the audit log's cursors
	Sessions     Sessions
	Staff        Staff
	Identities   Identities
	Certificates Certificates
	Grants       Grants
	CWTs         CWTs // nil: ACE is off
	Connections  Connections
	Resets       PasswordResets // nil: no mail is sent on a forced reset
	Store        Store
	History      *History // nil: a dashboard without charts
	Clients      Clients
	Authorities  Authorities
	TopicRules   []TopicRule // nil: the broker is off
	Gateway      Gateway     // nil: the gateway is off
	Logger       *slog.Logger
	Now          func() time.Time // nil: time.Now
}

// Console serves the pages.
type Console struct {
	opts  Options
	log   *slog.Logger
	kit   ui.Kit
	csrf  *ui.CSRF
	pages pages
}

// New returns the console.
func New(o Options) (*Console, error) {
	if len(o.CSRFKey) < 32 || len(o.CursorKey) < 32 {
		return nil, errors.New("console: the CSRF and cursor keys must have at least 32 bytes")
	}
	if o.Sessions == nil || o.Staff == nil || o.Identities == nil || o.Certificates == nil || o.Grants == nil || o.Store == nil ||
		o.Clients == nil || o.Authorities == nil {
		return nil, errors.New("console: sessions, staff, identities, certificates, grants, store, clients and authorities are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{opts: o, log: o.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.kit = ui.Kit{AssetPrefix: assetPrefix, Log: c.log, Site: o.Site}
	c.csrf = ui.NewCSRF(o.CSRFKey, !strings.HasPrefix(o.BaseURL, "http://"))
	c.pages = parsePages(c.kit)
	return c, nil
}

//go:embed templates/*.html
var templateFS embed.FS

type pages struct {
	message, confirm, dashboard, things, thing, users, user, audit, clients, platform *ui.Page
	batches, batch, cas                                                               *ui.Page
}

func parsePages(kit ui.Kit) pages {
	page := func(name string) *ui.Page { return kit.Page(templateFS, "templates/"+name, "templates/partials.html") }
	return pages{message: page("message.html"), confirm: page("confirm.html"), dashboard: page("dashboard.html"),
		things: page("things.html"), thing: page("thing.html"), users: page("users.html"), user: page("user.html"),
		audit: page("audit.html"), clients: page("clients.html"), platform: page("platform.html"),
		batches: page("batches.html"), batch: page("batch.html"), cas: page("cas.html")}
}

// staff is who is signed in to the console.
type staff struct {
	user *store.User
	// admin: a member of administrators, who may change; otherwise support
	// staff, who read.
	admin bool
}

// actor names the staff member in the audit log, as the admin APIs do.
func (s staff) actor() string {
	if s.admin {
		return "admin:" + s.user.ID
	}
	return "support:" + s.user.ID
}

type handler func(w http.ResponseWriter, r *http.Request, s staff)

// Register mounts the console on mux. Every route refuses cross-site
// requests; every POST needs an administrator and a valid CSRF token.
func (c *Console) Register(mux routes.Mux) {
	cop := ui.CrossOrigin(c.opts.BaseURL, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.message(w, r, http.StatusForbidden, "Request refused", "The form did not come from this site. Open the page again and resubmit.")
	}))
	read := func(h handler) http.Handler {
		return ui.SecurityHeaders(cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s, ok := c.signedIn(w, r); ok {
				h(w, r, s)
			}
		})))
	}
	// change is a POST: CSRF first (a forged form learns nothing, not even
	// whether its sender may change), then the administrator, then, for a
	// destructive change without confirm=yes, the confirmation page.
	change := func(destructive string, h handler) http.Handler {
		return read(func(w http.ResponseWriter, r *http.Request, s staff) {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.message(w, r, http.StatusBadRequest, "Form not accepted", "The form could not be read. Open the page again and resubmit.")
				return
			}
			if !c.csrf.Valid(r, r.PostForm.Get("csrf")) {
				c.message(w, r, http.StatusForbidden, "Form expired", "The form expired or did not come from this site. Open the page again and resubmit.")
				return
			}
			if !s.admin {
				c.message(w, r, http.StatusForbidden, "Read only", "Support staff can read the console but change nothing. Ask an administrator.")
				return
			}
			if destructive != "" && r.PostForm.Get("confirm") != "yes" {
				c.confirm(w, r, destructive)
				return
			}
			h(w, r, s)
		})
	}
	mux.Handle("GET "+Path, read(c.showDashboard))
	mux.Handle("GET "+Path+"/things", read(c.showThings))
	mux.Handle("GET "+Path+"/things/{id}", read(c.showThing))
	mux.Handle("POST "+Path+"/things/{id}/disable", change("Disable this thing", c.submitThingStatus(store.StatusDisabled)))
	mux.Handle("POST "+Path+"/things/{id}/enable", change("", c.submitThingStatus(store.StatusActive)))
	mux.Handle("POST "+Path+"/things/{id}/unlink", change("Unlink this thing from its owner", c.submitUnlink))
	mux.Handle("POST "+Path+"/things/{id}/certificates/revoke", change("Revoke this certificate", c.submitRevokeCert))
	mux.Handle("POST "+Path+"/things/{id}/grants/revoke", change("Revoke this grant", c.submitRevokeThingGrant))
	mux.Handle("POST "+Path+"/things/{id}/disconnect", change("Disconnect this MQTT session", c.submitDisconnect))
	mux.Handle("POST "+Path+"/things/{id}/cwts/revoke", change("Revoke this CWT", c.submitRevokeCWT))
	mux.Handle("GET "+Path+"/users", read(c.showUsers))
	mux.Handle("POST "+Path+"/users", change("", c.submitCreateUser))
	mux.Handle("GET "+Path+"/users/{id}", read(c.showUser))
	mux.Handle("POST "+Path+"/users/{id}/disable", change("Disable this user", c.submitUserStatus(store.StatusDisabled)))
	mux.Handle("POST "+Path+"/users/{id}/enable", change("", c.submitUserStatus(store.StatusActive)))
	mux.Handle("POST "+Path+"/users/{id}/sessions/end", change("End every session of this user", c.submitEndSessions))
	mux.Handle("POST "+Path+"/users/{id}/password/reset", change("Force this user to choose a new password", c.submitForceReset))
	mux.Handle("POST "+Path+"/users/{id}/grants/revoke", change("Revoke this grant", c.submitRevokeUserGrant))
	mux.Handle("GET "+Path+"/audit", read(c.showAudit))
	mux.Handle("GET "+Path+"/audit.csv", read(c.exportAudit))
	mux.Handle("GET "+Path+"/clients", read(c.showClients))
	mux.Handle("POST "+Path+"/clients", change("", c.submitCreateClient))
	mux.Handle("POST "+Path+"/clients/{id}/secret", change("Rotate this client's secret", c.submitRotateSecret))
	mux.Handle("POST "+Path+"/clients/{id}/delete", change("Delete this client and revoke its grants", c.submitDeleteClient))
	mux.Handle("GET "+Path+"/platform", read(c.showPlatform))
	mux.Handle("GET "+Path+"/batches", read(c.showBatches))
	mux.Handle("GET "+Path+"/batches/{id}", read(c.showBatch))
	mux.Handle("POST "+Path+"/batches/{id}/revoke", change("Revoke every certificate of this batch", c.submitRevokeBatch))
	mux.Handle("GET "+Path+"/cas", read(c.showCAs))
	mux.Handle("GET "+assetPrefix, c.kit.Assets())
}

// signedIn returns the staff member the request's session belongs to; it
// sends everyone else away: to sign in, or a 403 that says nothing of the
// console.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request) (staff, bool) {
	u, err := c.opts.Sessions.User(r)
	if err != nil {
		back := Path
		if r.Method == http.MethodGet {
			back = r.URL.RequestURI()
		}
		http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(back), http.StatusSeeOther)
		return staff{}, false
	}
	group, err := c.opts.Staff.MemberOf(r.Context(), u, AdminGroup, SupportGroup)
	if err != nil {
		c.log.Info("console: refused a signed-in user who is not staff", "user", u.ID, "path", r.URL.Path)
		c.message(w, r, http.StatusForbidden, "Forbidden", "You may not open this page.")
		return staff{}, false
	}
	return staff{user: u, admin: group == AdminGroup}, true
}

type messagePage struct {
	Title string
	Text  any // English source text, a ui.Message or an error (a ui.Refusal is translated)
}

// message shows a page of title and text: English source text the template
// translates, a ui.Message, or an error (a ui.Refusal in the reader's
// language, any other as it is).
func (c *Console) message(w http.ResponseWriter, r *http.Request, status int, title string, text any) {
	c.kit.Render(w, r, status, c.pages.message, messagePage{Title: title, Text: text})
}

func (c *Console) pageError(w http.ResponseWriter, r *http.Request, err error) {
	c.log.Error("console: page", "method", r.Method, "path", r.URL.Path, "err", err)
	c.message(w, r, http.StatusInternalServerError, "Something went wrong", "Try again in a moment.")
}

// field is one posted field carried through the confirmation page.
type field struct{ Name, Value string }

type confirmPage struct {
	Title, Action, CSRF, Back string
	Fields                    []field
}

// confirm asks before a destructive change: the same form again, with
// confirm=yes, and a way back.
func (c *Console) confirm(w http.ResponseWriter, r *http.Request, title string) {
	p := confirmPage{Title: title, Action: r.URL.Path, CSRF: c.csrf.Token(w, r), Back: backOf(r.URL.Path)}
	for name, vs := range r.PostForm {
		if name == "csrf" || name == "confirm" {
			continue
		}
		for _, v := range vs {
			p.Fields = append(p.Fields, field{name, v})
		}
	}
	c.kit.Render(w, r, http.StatusOK, c.pages.confirm, p)
}

// backOf is the page of the thing or user a change's path is about:
// /admin/things/{id}/... → /admin/things/{id}.
func backOf(path string) string {
	parts := strings.SplitN(strings.TrimPrefix(path, Path+"/"), "/", 3)
	if len(parts) >= 2 {
		return Path + "/" + parts[0] + "/" + parts[1]
	}
	return Path
}

// done redirects to a page of ours with a notice; path is built from our
// paths and escaped ids only.
func done(w http.ResponseWriter, r *http.Request, path, notice string) {
	http.Redirect(w, r, path+"?done="+url.QueryEscape(notice), http.StatusSeeOther)
}

// notices are the fixed texts a redirect after a change may show.
var notices = map[string]string{
	"disabled":      "Disabled.",
	"enabled":       "Enabled.",
	"unlinked":      "Unlinked from its owner; the owner's grants for it are revoked.",
	"revoked":       "Certificate revoked. Connections that used it are closed.",
	"grant":         "Grant revoked. Its tokens stop working at once.",
	"disconnected":  "MQTT session ended.",
	"created":       "User created.",
	"sessions":      "Every session of this user ended.",
	"reset":         "Every session ended; the next sign-in must choose a new password. A link to choose it was mailed to the user's verified address.",
	"resetNoMail":   "Every session ended; the next sign-in must choose a new password. No link was mailed: the user has no verified e-mail address.",
	"clientDeleted": "Client deleted; its grants are revoked.",
	"batchRevoked":  "Every certificate of this batch is revoked. Connections that used them are closed.",
	"cwtRevoked":    "CWT revoked. Every node refuses it, and the CoAP sessions holding it are closed.",
}

// base is what every console page shows around its content.
type base struct {
	Staff  string
	Admin  bool
	CSRF   string
	Notice string
}

func (c *Console) base(w http.ResponseWriter, r *http.Request, s staff) base {
	return base{Staff: s.user.UserName, Admin: s.admin, CSRF: c.csrf.Token(w, r), Notice: notices[r.URL.Query().Get("done")]}
}

func pathOf(kind, id string) string {
	return Path + "/" + kind + "/" + url.PathEscape(id)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
