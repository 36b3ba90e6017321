package authn

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Users is what sign-in reads of the identity service (*identity.Service, whose
// GetUserByName normalizes names the way registration stored them).
type Users interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByName(ctx context.Context, userName string) (*store.User, error)
	// HashPassword applies the password policy; UpdateUser stores the result
	// (and clears MustChangePassword).
	HashPassword(pw string, u *store.User) (string, error)
	UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error)
}

// SessionStore keeps sessions and the failure counters of brute-force defence,
// shared by every node (the SQL store implements both).
type SessionStore interface {
	store.Sessions
	store.Counters
}

// Auditor appends audit records (store.Store implements it).
type Auditor interface {
	AppendAudit(ctx context.Context, recs ...store.AuditRecord) error
}

// SessionOptions configures sign-in and sessions. Key is required; every other
// zero value means the documented default.
type SessionOptions struct {
	// Key (at least 32 bytes, the same on every node) keys the stored hashes of
	// session cookies, the CSRF tokens of the forms and the names of counters.
	Key []byte
	// BaseURL is the public URL of the server; it is a trusted origin for the
	// forms. Cookies are Secure and __Host- prefixed unless it starts with
	// "http://" (local development only).
	BaseURL string
	// IdleTimeout ends a session not used for so long (default 30 min);
	// AbsoluteTimeout ends every session so long after sign-in (default 12 h).
	// OWASP Session Management Cheat Sheet, "Session Expiration".
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// StaffIdleTimeout and StaffAbsoluteTimeout end sooner the sessions of
	// administrators and support staff (defaults 10 min and 4 h, at most the
	// timeouts above): what they can see and do is worth more to whoever
	// finds their browser open. They need the Admins of NewSessions.
	StaffIdleTimeout     time.Duration
	StaffAbsoluteTimeout time.Duration
	// FreeFailures is how many failed sign-ins an account may have within
	// FailureWindow before each further attempt waits 2^(n-FreeFailures) s, at
	// most MaxBackoff. Defaults 5, 15 min, 15 min (NIST SP 800-63B §5.2.2).
	FreeFailures  int
	FailureWindow time.Duration
	MaxBackoff    time.Duration
	// IPAttemptsPerMinute and IPBurst bound sign-in attempts per client address
	// (IPv6: per /64): a bucket of IPBurst attempts refilled at the rate.
	// Defaults 10 and 20.
	IPAttemptsPerMinute float64
	IPBurst             int
	// SignedInPath is where a sign-in without return_to lands; default /account.
	SignedInPath string
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site *ui.Site
	// Audit receives sign-in, sign-out and termination records; nil: none.
	Audit Auditor
	// Registerer registers thingid_signin_total; nil: not registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger // nil: slog.Default()
}

// Validate reports configuration that cannot work.
func (o SessionOptions) Validate() error {
	if len(o.Key) < 32 {
		return errors.New("authn: the session key must have at least 32 bytes")
	}
	if o.BaseURL != "" {
		u, err := url.Parse(o.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("authn: base URL %q is not an absolute http(s) URL", o.BaseURL)
		}
	}
	if o.IdleTimeout < 0 || o.AbsoluteTimeout < 0 || o.StaffIdleTimeout < 0 || o.StaffAbsoluteTimeout < 0 || o.FreeFailures < 0 || o.FailureWindow < 0 ||
		o.MaxBackoff < 0 || o.IPAttemptsPerMinute < 0 || o.IPBurst < 0 {
		return errors.New("authn: timeouts, failure limits and rates must not be negative")
	}
	if o.SignedInPath != "" && safeReturnTo(o.SignedInPath) == "" {
		return fmt.Errorf("authn: signed-in path %q is not a local path", o.SignedInPath)
	}
	return nil
}

// Sessions signs people in with user name and password and keeps their
// browser sessions on the server.
type Sessions struct {
	users  Users
	st     SessionStore
	admins *Admins
	opts   SessionOptions
	log    *slog.Logger
	now    func() time.Time

	hashKey, counterKey []byte
	secure              bool
	cookieName          string
	touchEvery          time.Duration

	kit     ui.Kit
	csrf    *ui.CSRF
	pages   pages
	signins *prometheus.CounterVec
}

// NewSessions returns the sign-in component. admins authenticates the admin
// session API; nil leaves those routes out. It panics when opts fail Validate.
func NewSessions(users Users, st SessionStore, admins *Admins, opts SessionOptions) *Sessions {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	s := &Sessions{users: users, st: st, admins: admins, opts: opts, log: opts.Logger, now: time.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	o := &s.opts
	o.IdleTimeout = cmp(o.IdleTimeout, 30*time.Minute)
	o.AbsoluteTimeout = cmp(o.AbsoluteTimeout, 12*time.Hour)
	o.StaffIdleTimeout = min(cmp(o.StaffIdleTimeout, 10*time.Minute), o.IdleTimeout)
	o.StaffAbsoluteTimeout = min(cmp(o.StaffAbsoluteTimeout, 4*time.Hour), o.AbsoluteTimeout)
	o.FreeFailures = cmp(o.FreeFailures, 5)
	o.FailureWindow = cmp(o.FailureWindow, 15*time.Minute)
	o.MaxBackoff = cmp(o.MaxBackoff, 15*time.Minute)
	o.IPAttemptsPerMinute = cmp(o.IPAttemptsPerMinute, 10)
	o.IPBurst = cmp(o.IPBurst, 20)
	o.SignedInPath = cmp(o.SignedInPath, "/account")
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")

	s.hashKey = derive(opts.Key, "thingid session cookie v1")
	s.counterKey = derive(opts.Key, "thingid sign-in counters v1")
	s.secure = !strings.HasPrefix(o.BaseURL, "http://")
	s.cookieName = "thingid-session"
	if s.secure {
		// RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, has Path=/ and no
		// Domain, so neither a sibling subdomain nor plain HTTP can plant one.
		s.cookieName = "__Host-thingid-session"
	}
	// LastSeen is written at most once a minute (less often would make the
	// idle timeout imprecise, more often would write on every request).
	s.touchEvery = min(time.Minute, o.StaffIdleTimeout/2)
	s.kit = ui.Kit{AssetPrefix: assetPrefix, Log: s.log, Site: opts.Site}
	s.csrf = ui.NewCSRF(derive(opts.Key, "thingid sign-in csrf v1"), s.secure)
	s.pages = parsePages(s.kit)
	s.signins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "thingid_signin_total",
		Help: "Sign-in attempts with user name and password (page and API), by result.",
	}, []string{"result"})
	for _, r := range []string{resultOK, resultChangePassword, resultBadCredentials, resultLocked, resultThrottled, resultError} {
		s.signins.WithLabelValues(r) // from zero, so that rate() sees the first
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(s.signins)
	}
	return s
}

// cmp returns v, or def when v is the zero value.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// CookieName is the name of the session cookie.
func (s *Sessions) CookieName() string { return s.cookieName }

// hash is the keyed hash a session is stored under: a copy of the database
// does not yield cookies that work.
func (s *Sessions) hash(secret []byte) []byte {
	m := hmac.New(sha256.New, s.hashKey)
	m.Write(secret)
	return m.Sum(nil)
}

// publicID names a session in listings and URLs: a prefix of its hash, which
// does not let anyone compute the cookie.
func publicID(hash []byte) string { return hex.EncodeToString(hash[:8]) }

// ErrNoSession: the request carries no valid session.
var ErrNoSession = errors.New("not signed in")

// cookieHash returns the stored hash for the request's session cookie.
func (s *Sessions) cookieHash(r *http.Request) ([]byte, bool) {
	c, err := r.Cookie(s.cookieName)
	if err != nil {
		return nil, false
	}
	secret, err := b64.DecodeString(c.Value)
	if err != nil || len(secret) != 32 {
		return nil, false
	}
	return s.hash(secret), true
}

// expired reports whether a session has passed its idle or absolute timeout.
func (s *Sessions) expired(sess *store.Session, now time.Time) bool {
	last := sess.LastSeen
	if last.IsZero() {
		last = sess.Created
	}
	return !now.Before(sess.ExpiresAt) || !now.Before(sess.Created.Add(s.opts.AbsoluteTimeout)) ||
		!now.Before(last.Add(s.opts.IdleTimeout))
}

// staffExpired reports whether a session has passed the shorter timeouts of
// administrators and support staff.
func (s *Sessions) staffExpired(sess *store.Session, now time.Time) bool {
	last := sess.LastSeen
	if last.IsZero() {
		last = sess.Created
	}
	return !now.Before(sess.Created.Add(s.opts.StaffAbsoluteTimeout)) || !now.Before(last.Add(s.opts.StaffIdleTimeout))
}

// staff tells whether u is an administrator or support staff. It is asked
// only of a session past the staff timeouts, so that a normal session costs
// no group lookup.
func (s *Sessions) staff(ctx context.Context, u *store.User) (bool, error) {
	if s.admins == nil {
		return false, nil
	}
	_, err := s.admins.MemberOf(ctx, u, AdminGroup, SupportGroup)
	switch {
	case err == nil || errors.Is(err, ErrPasswordChangeRequired):
		return true, nil
	case errors.Is(err, ErrUnauthenticated):
		return false, nil
	}
	return false, err
}

// current returns the request's session and its user. A session that has timed
// out, or whose user was deleted or disabled, is removed and refused.
func (s *Sessions) current(r *http.Request) (*store.Session, *store.User, error) {
	ctx := r.Context()
	h, ok := s.cookieHash(r)
	if !ok {
		return nil, nil, ErrNoSession
	}
	sess, err := s.st.GetSession(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNoSession
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the session: %w", err)
	}
	now := s.now()
	if s.expired(sess, now) {
		_ = s.st.DeleteSession(ctx, h)
		return nil, nil, ErrNoSession
	}
	u, err := s.users.GetUser(ctx, sess.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Status != store.StatusActive) {
		// Deleted or disabled: none of the user's sessions may work, now or
		// after the user is enabled again.
		_ = s.st.DeleteUserSessions(ctx, sess.UserID)
		return nil, nil, ErrNoSession
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the session's user: %w", err)
	}
	if s.staffExpired(sess, now) {
		switch staff, err := s.staff(ctx, u); {
		case err != nil:
			return nil, nil, fmt.Errorf("reading the session's user's groups: %w", err)
		case staff:
			_ = s.st.DeleteSession(ctx, h)
			return nil, nil, ErrNoSession
		}
	}
	if last := sess.LastSeen; last.IsZero() || now.Sub(last) >= s.touchEvery {
		if err := s.st.TouchSession(ctx, h, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("authn: updating the session's last use", "err", err)
		}
		sess.LastSeen = now
	}
	return sess, u, nil
}

// confined returns current, refusing with ErrPasswordChangeRequired a user
// who must change the password: such a session reaches only the password page,
// the password API and sign-out.
func (s *Sessions) confined(r *http.Request) (*store.Session, *store.User, error) {
	sess, u, err := s.current(r)
	if err == nil && u.MustChangePassword {
		return nil, nil, ErrPasswordChangeRequired
	}
	return sess, u, err
}

// User returns the signed-in user of the request, or ErrNoSession, or
// ErrPasswordChangeRequired (whose pages should send the browser to sign-in,
// which sends it on to the password page).
func (s *Sessions) User(r *http.Request) (*store.User, error) {
	_, u, err := s.confined(r)
	return u, err
}

// AuthTime is when the request's session signed in (OIDC auth_time, max_age).
func (s *Sessions) AuthTime(r *http.Request) (time.Time, error) {
	sess, _, err := s.confined(r)
	if err != nil {
		return time.Time{}, err
	}
	return sess.AuthTime, nil
}

type userKey struct{}

// Require wraps next so that only signed-in users reach it; SignedIn returns
// the user inside next. deny answers everyone else (err is ErrNoSession,
// ErrPasswordChangeRequired or a store failure).
func (s *Sessions) Require(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error)) http.Handler {
	return s.require(next, deny, s.confined)
}

// requireAny is Require that lets in a user who must change the password.
func (s *Sessions) requireAny(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error)) http.Handler {
	return s.require(next, deny, s.current)
}

func (s *Sessions) require(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error),
	current func(*http.Request) (*store.Session, *store.User, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, u, err := current(r)
		if err != nil {
			deny(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, signedIn{u, sess})))
	})
}

type signedIn struct {
	user *store.User
	sess *store.Session
}

// SignedIn returns the user that Require put in the request context, or nil.
func SignedIn(r *http.Request) *store.User {
	v, _ := r.Context().Value(userKey{}).(signedIn)
	return v.user
}

func currentSession(r *http.Request) *store.Session {
	v, _ := r.Context().Value(userKey{}).(signedIn)
	return v.sess
}

// start creates a new session for u and sets its cookie. Any session the
// request carried is ended first: an identifier known before sign-in must never
// become an authenticated one (session fixation, OWASP Session Management
// Cheat Sheet "Renew the Session ID After Any Privilege Level Change").
func (s *Sessions) start(w http.ResponseWriter, r *http.Request, u *store.User) (*store.Session, error) {
	ctx := r.Context()
	if old, ok := s.cookieHash(r); ok {
		if err := s.st.DeleteSession(ctx, old); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("ending the previous session: %w", err)
		}
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails (Go 1.24+)
	now := s.now().UTC()
	sess := &store.Session{
		Hash:      s.hash(secret),
		UserID:    u.ID,
		Created:   now,
		AuthTime:  now,
		LastSeen:  now,
		ExpiresAt: now.Add(s.opts.AbsoluteTimeout),
		RemoteIP:  clientIP(r),
		UserAgent: truncate(r.UserAgent(), 256),
	}
	if err := s.st.CreateSession(ctx, sess); err != nil {
		return nil, fmt.Errorf("storing the session: %w", err)
	}
	// No Expires or Max-Age: the cookie ends with the browser; the server
	// enforces the timeouts either way.
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName, Value: b64.EncodeToString(secret), Path: "/",
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	return sess, nil
}

// end deletes the request's session, if any, and clears its cookie.
func (s *Sessions) end(w http.ResponseWriter, r *http.Request) (*store.Session, error) {
	var sess *store.Session
	if h, ok := s.cookieHash(r); ok {
		sess, _ = s.st.GetSession(r.Context(), h)
		if err := s.st.DeleteSession(r.Context(), h); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	return sess, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

var b64 = base64.RawURLEncoding
