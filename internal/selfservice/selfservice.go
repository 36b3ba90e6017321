// Package selfservice is what people do to their own account without an
// administrator: register and verify their e-mail address, recover a forgotten
// password by an e-mailed one-time link, change their e-mail address, delete
// their account and download their data, through pages and JSON APIs. It
// changes identities only through the identity service, revokes grants and
// shares only through the components that own them, and reads the store only
// to show people what it holds about them.
package selfservice

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Users is what self-service needs of the identity service (*identity.Service).
type Users interface {
	CreateUser(ctx context.Context, actor string, u *store.User, password string) (*store.User, error)
	UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error)
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByName(ctx context.Context, name string) (*store.User, error)
	// GetUserByVerifiedEmail finds the one user who has verified an address.
	GetUserByVerifiedEmail(ctx context.Context, email string) (*store.User, error)
	HashPassword(pw string, u *store.User) (string, error)
	RequestPasswordReset(ctx context.Context, actor string, r *store.PasswordReset) error
	RecoverPassword(ctx context.Context, actor string, resetHash []byte, userID, h string, at time.Time) (*store.User, error)
	ChangeEmail(ctx context.Context, actor, id, from, to string) (*store.User, error)
	DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error
	DeleteGroup(ctx context.Context, actor, id string, ifRevision int64) error
}

// Sessions is what the account pages need of browser sign-in (*authn.Sessions).
type Sessions interface {
	// User is the signed-in user of r, or an error (authn.ErrNoSession, ...).
	User(r *http.Request) (*store.User, error)
	// Reauthenticate checks the user's password again before a grave
	// action, throttled as sign-in is (authn.ErrWrongPassword,
	// authn.ErrTooManyAttempts with the wait).
	Reauthenticate(r *http.Request, u *store.User, pw string) (time.Duration, error)
}

// Revoker revokes what a deleted account leaves behind through the
// components that own it, which audit and publish the revocations so that
// tokens die at once: the authorization server (*oauth.Server: Unlink,
// RevokeUserGrant) and UMA (*uma.Server: RevokeShare), adapted in server.
type Revoker interface {
	Unlink(ctx context.Context, actor, userID, thingID string) error
	RevokeUserGrant(ctx context.Context, actor, userID, grantID string) error
	RevokeShare(ctx context.Context, actor, owner, id string) error
}

// Data is what self-service reads of the store (store.Store): password
// resets, and everything a user may download about themselves.
type Data interface {
	GetPasswordReset(ctx context.Context, hash []byte, at time.Time) (*store.PasswordReset, error)
	GetGroup(ctx context.Context, id string) (*store.Group, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error)
	ListGrants(ctx context.Context, f store.GrantFilter) ([]*store.Grant, error)
	GetConsent(ctx context.Context, userID, clientID string) (*store.Consent, error)
	ListMemberships(ctx context.Context, userID string) ([]store.HouseholdMember, error)
	ListHouseholdMembers(ctx context.Context, householdID string) ([]store.HouseholdMember, error)
	GetHousehold(ctx context.Context, id string) (*store.Household, error)
	ListUMAResources(ctx context.Context, f store.UMAResourceFilter) ([]*store.UMAResource, error)
	ListUMAShares(ctx context.Context, f store.UMAShareFilter) ([]*store.UMAShare, error)
	ListUMARequests(ctx context.Context, f store.UMARequestFilter) ([]*store.UMARequest, error)
	ListSessions(ctx context.Context, userID string) ([]*store.Session, error)
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error)
}

// Account is what the pages and APIs of a signed-in user's account (and
// password recovery) need; without it only registration is served.
type Account struct {
	Sessions Sessions
	Data     Data
	Revoker  Revoker
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

// Options configures self-service. The zero value serves no registration.
type Options struct {
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site *ui.Site
	// Enabled false answers 404 on every registration route; the account's
	// routes do not depend on it.
	Enabled bool
	// Account serves password recovery, e-mail changes, account deletion and
	// data download; nil: only registration.
	Account *Account
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
	// VerificationTTL is how long a verification link (a new account's,
	// or a new address's) stays valid; 0 means 24 hours.
	VerificationTTL time.Duration
	// ResetTTL is how long a password reset link stays valid; 0 means 30
	// minutes.
	ResetTTL time.Duration
	// MailsPerHour is how many password reset and address change e-mails
	// one account, or one address or user name asked for, may be sent per
	// hour (a burst of as many, refilled evenly); 0 means 3. More requests
	// are answered as usual and send nothing.
	MailsPerHour float64
	// SMTP sends the e-mails; without SMTP.Host they go to OutboxDir (created
	// 0700, files 0600). Without either, e-mail verification cannot be on
	// and password recovery and address changes answer 404.
	SMTP      SMTPOptions
	OutboxDir string
	// Now is the clock of links' expiry; nil: time.Now.
	Now func() time.Time
	// Metrics receives thingid_selfservice_mails_total; nil: not registered.
	Metrics prometheus.Registerer
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
	if o.RatePerMinute < 0 || o.Burst < 0 || o.TrackedClients < 0 || o.VerificationTTL < 0 || o.ResetTTL < 0 || o.MailsPerHour < 0 {
		return errors.New("selfservice: rate, burst, tracked clients, mails per hour and link lifetimes must not be negative")
	}
	if o.Account != nil && (o.Account.Sessions == nil || o.Account.Data == nil || o.Account.Revoker == nil) {
		return errors.New("selfservice: the account pages need sessions, the store and a revoker")
	}
	if o.Account != nil && (o.SMTP.Host != "" || o.OutboxDir != "") {
		if o.BaseURL == "" {
			return errors.New("selfservice: password recovery needs the public base URL for its links")
		}
		if len(o.SigningKey) == 0 {
			return errors.New("selfservice: password recovery needs a signing key shared by all nodes")
		}
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

// Handler serves self-service.
type Handler struct {
	users    Users
	opts     Options
	log      *slog.Logger
	key      []byte
	now      func() time.Time
	throttle *throttle[netip.Prefix]
	// mailBudget throttles the e-mails asked for per account and per
	// address or user name typed (mailKey); mailCount counts e-mails by
	// kind and result.
	mailBudget *throttle[string]
	mailCount  *prometheus.CounterVec
	mailer     Mailer
	kit        ui.Kit
	mails      map[string]*ui.Mail // by kind
	pages      pages
	csrf       *ui.CSRF
	baseURL    string

	// sending bounds the e-mails sent in the background; pending waits
	// for them (tests).
	sending chan struct{}
	pending sync.WaitGroup
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
	h.mails = parseMails(h.kit)
	if h.opts.Actor == "" {
		h.opts.Actor = "selfservice"
	}
	if h.opts.VerificationTTL == 0 {
		h.opts.VerificationTTL = 24 * time.Hour
	}
	if h.opts.ResetTTL == 0 {
		h.opts.ResetTTL = 30 * time.Minute
	}
	if h.opts.MailsPerHour == 0 {
		h.opts.MailsPerHour = 3
	}
	h.now = opts.Now
	if h.now == nil {
		h.now = time.Now
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
	h.throttle = newThrottle[netip.Prefix](opts.RatePerMinute, opts.Burst, opts.TrackedClients)
	h.throttle.shared, h.throttle.log = opts.Attempts, h.log // every node of the database counts together
	h.mailBudget = newThrottle[string](h.opts.MailsPerHour/60, int(math.Ceil(h.opts.MailsPerHour)), opts.TrackedClients)
	h.sending = make(chan struct{}, maxSending)
	h.mailCount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "thingid_selfservice_mails_total",
		Help: "Self-service e-mails by kind (verification, password_reset, password_changed_notice, address_change, address_change_notice) and result (sent, failed, throttled, dropped).",
	}, []string{"kind", "result"})
	if opts.Metrics != nil {
		opts.Metrics.MustRegister(h.mailCount)
	}
	switch {
	case opts.SMTP.Host != "":
		h.mailer = &smtpMailer{opts: opts.SMTP}
	case opts.OutboxDir != "":
		h.mailer = &outbox{dir: opts.OutboxDir, log: h.log}
	case opts.Account != nil:
		h.log.Warn("selfservice: no SMTP host and no outbox; password recovery and address changes are off")
	}
	return h
}

// Register mounts the routes on mux.
func (h *Handler) Register(mux routes.Mux) {
	registration := map[string]http.Handler{
		"GET /register":         http.HandlerFunc(h.showForm),
		"POST /register":        wrap(h.throttle, http.HandlerFunc(h.submitForm), h.tooManyPage),
		"GET /register/done":    http.HandlerFunc(h.showDone),
		"GET /register/verify":  wrap(h.throttle, http.HandlerFunc(h.verifyEmail), h.tooManyPage),
		"POST /api/v1/register": wrap(h.throttle, http.HandlerFunc(h.registerJSON), tooManyProblem),
	}
	// Behind a proxy that rewrites Host, the public origin is still ours.
	cop := ui.CrossOrigin(h.baseURL, http.HandlerFunc(h.crossOrigin))
	mount := func(pattern string, handler http.Handler) {
		mux.Handle(pattern, ui.SecurityHeaders(cop.Handler(handler)))
	}
	for pattern, handler := range registration {
		if !h.opts.Enabled {
			handler = http.NotFoundHandler()
		}
		mount(pattern, handler)
	}
	mount("GET "+assetPrefix, h.kit.Assets())
	if h.opts.Account == nil {
		return
	}
	for pattern, handler := range h.accountRoutes() {
		mount(pattern, handler)
	}
}

// crossOrigin answers requests refused by http.CrossOriginProtection.
func (h *Handler) crossOrigin(w http.ResponseWriter, r *http.Request) {
	h.log.Info("selfservice: cross-origin request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "secFetchSite", r.Header.Get("Sec-Fetch-Site"))
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeProblem(w, http.StatusForbidden, "cross-origin requests are not accepted; call this API from a server or from our own pages")
		return
	}
	if r.URL.Path == "/register" {
		h.render(w, r, http.StatusForbidden, h.pages.message, messagePage{
			Title: "Request refused",
			Text:  "This form can only be sent from our own registration page. Open the page again and submit it from there.",
			Link:  "/register",
		})
		return
	}
	h.render(w, r, http.StatusForbidden, h.pages.message, messagePage{
		Title: "Request refused",
		Text:  "This form can only be sent from our own pages. Open the page again and submit it from there.",
		Link:  r.URL.Path, LinkText: "Open the page again",
	})
}
