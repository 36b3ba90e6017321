// Package selfservice lets people register an account themselves, through an HTML
// form or a JSON API, and verify their e-mail address. It changes identities only
// through the identity service and never touches the store or other components.
package selfservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Users is what registration needs of the identity service (*identity.Service).
type Users interface {
	CreateUser(ctx context.Context, actor string, u *store.User, password string) (*store.User, error)
	UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error)
	// GetUserByVerifiedEmail finds the one user who has verified an address.
	GetUserByVerifiedEmail(ctx context.Context, email string) (*store.User, error)
}

// Attempts counts a client's attempts in a window shared by every node
// (store.Counters).
type Attempts interface {
	AddFailure(ctx context.Context, key string, at time.Time, window time.Duration) (count int, since time.Time, err error)
}

// SMTPOptions configures the mail server verification e-mails go through.
type SMTPOptions struct {
	Host     string // empty: write e-mails to Options.OutboxDir instead
	Port     int    // 0: 587 (submission with STARTTLS)
	Username string // empty: no authentication
	Password string
	From     string // envelope and header sender, e.g. "thingid <no-reply@example.com>"
}

// Options configures self-registration. The zero value is disabled.
type Options struct {
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site *ui.Site
	// Enabled false answers 404 on every route.
	Enabled bool
	// Actor is recorded in the audit log for registrations; "" means "selfservice".
	Actor string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// BaseURL is the public URL of the server (scheme and host, optional path
	// prefix), used for links in e-mails and as a trusted origin. Required with
	// EmailVerification: deriving links from the request's Host header would let
	// anyone make us mail links pointing elsewhere.
	BaseURL string
	// SigningKey signs CSRF and e-mail verification tokens (HMAC-SHA256), at least
	// 32 bytes. Every node of a cluster needs the same key. Required with
	// EmailVerification; without it a random key is used and forms stop working
	// across a restart or a load balancer.
	SigningKey []byte
	// RatePerMinute is the sustained number of registration attempts allowed per
	// client IP address (IPv6: per /64); 0 means 6. Burst is how many may come
	// at once; 0 means 5. TrackedClients bounds the memory used for this; 0
	// means 10000 (the least recently seen client is forgotten first).
	RatePerMinute  float64
	Burst          int
	TrackedClients int
	// Attempts, when set, counts attempts in the store instead of memory, so
	// that every node of one database counts a client's attempts together:
	// at most Burst + RatePerMinute in any minute that starts at a client's
	// first attempt.
	Attempts Attempts
	// EmailVerification sends new users a link that marks their e-mail verified.
	EmailVerification bool
	// VerificationTTL is how long a link stays valid; 0 means 24 hours.
	VerificationTTL time.Duration
	// SMTP sends the e-mails; without SMTP.Host they go to OutboxDir (created
	// 0700, files 0600), which is then required.
	SMTP      SMTPOptions
	OutboxDir string
}

// Validate reports configuration that cannot work.
func (o Options) Validate() error {
	if !o.Enabled {
		return nil
	}
	if o.BaseURL != "" {
		u, err := url.Parse(o.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("selfservice: base URL %q is not an absolute http(s) URL", o.BaseURL)
		}
	}
	if len(o.SigningKey) > 0 && len(o.SigningKey) < 32 {
		return errors.New("selfservice: signing key must have at least 32 bytes")
	}
	if o.RatePerMinute < 0 || o.Burst < 0 || o.TrackedClients < 0 || o.VerificationTTL < 0 {
		return errors.New("selfservice: rate, burst, tracked clients and verification TTL must not be negative")
	}
	if !o.EmailVerification {
		return nil
	}
	switch {
	case o.BaseURL == "":
		return errors.New("selfservice: e-mail verification needs the public base URL for its links")
	case len(o.SigningKey) == 0:
		return errors.New("selfservice: e-mail verification needs a signing key shared by all nodes")
	case o.SMTP.Host == "" && o.OutboxDir == "":
		return errors.New("selfservice: e-mail verification needs an SMTP host or an outbox directory")
	case o.SMTP.Host != "" && o.SMTP.From == "":
		return errors.New("selfservice: e-mail verification over SMTP needs a From address")
	}
	return nil
}

// Handler serves self-registration.
type Handler struct {
	users    Users
	opts     Options
	log      *slog.Logger
	key      []byte
	throttle *throttle
	mailer   Mailer
	kit      ui.Kit
	pages    pages
	csrf     *ui.CSRF
	baseURL  string
}

// New returns a Handler creating users through users. It panics when opts fail
// Validate; call Validate first to report configuration errors nicely.
func New(users Users, opts Options) *Handler {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	h := &Handler{users: users, opts: opts, log: opts.Logger, key: opts.SigningKey}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.kit = ui.Kit{AssetPrefix: assetPrefix, Log: h.log, Site: h.opts.Site}
	h.pages = parsePages(h.kit)
	if h.opts.Actor == "" {
		h.opts.Actor = "selfservice"
	}
	if h.opts.VerificationTTL == 0 {
		h.opts.VerificationTTL = 24 * time.Hour
	}
	h.baseURL = strings.TrimSuffix(opts.BaseURL, "/")
	if len(h.key) == 0 {
		h.key = make([]byte, 32)
		_, _ = rand.Read(h.key) // crypto/rand.Read never fails (Go 1.24+)
		if opts.Enabled {
			h.log.Warn("selfservice: no signing key configured; registration forms will fail after a restart or on another node")
		}
	}
	// Cookies are Secure only over HTTPS.
	h.csrf = ui.NewCSRF(h.key, strings.HasPrefix(h.baseURL, "https://"))
	h.throttle = newThrottle(opts.RatePerMinute, opts.Burst, opts.TrackedClients)
	h.throttle.shared, h.throttle.log = opts.Attempts, h.log
	if opts.EmailVerification {
		if opts.SMTP.Host != "" {
			h.mailer = &smtpMailer{opts: opts.SMTP}
		} else {
			h.mailer = &outbox{dir: opts.OutboxDir, log: h.log}
		}
	}
	return h
}

// Register mounts the routes on mux.
func (h *Handler) Register(mux routes.Mux) {
	routes := map[string]http.Handler{
		"GET /register":         http.HandlerFunc(h.showForm),
		"POST /register":        h.throttle.wrap(http.HandlerFunc(h.submitForm), h.tooManyPage),
		"GET /register/done":    http.HandlerFunc(h.showDone),
		"GET /register/verify":  h.throttle.wrap(http.HandlerFunc(h.verifyEmail), h.tooManyPage),
		"POST /api/v1/register": h.throttle.wrap(http.HandlerFunc(h.registerJSON), tooManyProblem),
		"GET " + assetPrefix:    h.kit.Assets(),
	}
	// Behind a proxy that rewrites Host, the public origin is still ours.
	cop := ui.CrossOrigin(h.baseURL, http.HandlerFunc(h.crossOrigin))
	for pattern, handler := range routes {
		if !h.opts.Enabled {
			handler = http.NotFoundHandler()
		}
		mux.Handle(pattern, ui.SecurityHeaders(cop.Handler(handler)))
	}
}

// crossOrigin answers requests refused by http.CrossOriginProtection.
func (h *Handler) crossOrigin(w http.ResponseWriter, r *http.Request) {
	h.log.Info("selfservice: cross-origin request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "secFetchSite", r.Header.Get("Sec-Fetch-Site"))
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeProblem(w, http.StatusForbidden, "cross-origin requests are not accepted; call this API from a server or from our own pages")
		return
	}
	h.render(w, r, http.StatusForbidden, h.pages.message, messagePage{
		Title: "Request refused",
		Text:  "This form can only be sent from our own registration page. Open the page again and submit it from there.",
		Link:  "/register",
	})
}
