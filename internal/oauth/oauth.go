// Package oauth is thingid's OAuth 2.0 authorization server: discovery
// metadata, the client registry, client authentication, the token endpoint
// (client_credentials, device_code, refresh_token), the device authorization
// grant with its verification pages, and revocation. It decides what tokens
// say and issues them through internal/tokens; it never verifies tokens for
// resource servers and never changes identities except the owner link a device
// pairing creates, which it writes with its audit record and event exactly as
// internal/identity does.
package oauth

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/ui"
)

// Grant types this server implements.
const (
	GrantClientCredentials = "client_credentials"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	GrantRefreshToken      = "refresh_token"
)

// Paths of the endpoints, relative to the issuer.
const (
	PathToken     = "/oauth2/token"
	pathDeviceReq = "/oauth2/device_authorization"
	pathRevoke    = "/oauth2/revoke"
	pathJWKS      = "/oauth2/jwks"
	pathDevice    = "/device"
	assetPrefix   = "/assets/oauth/"
)

// Identities is what the server reads of users and things (*identity.Service).
type Identities interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	// WithTx runs fn in one transaction in which identity changes (the owner
	// link of a paired device) are audited and published as identity's own.
	WithTx(ctx context.Context, actor string, fn func(tx *identity.Tx) error) error
}

// SignedIn returns the signed-in user of a browser request, or an error when
// there is none (*authn.Sessions implements it).
type SignedIn interface {
	User(r *http.Request) (*store.User, error)
	// AuthTime is when the request's session signed in (OIDC auth_time).
	AuthTime(r *http.Request) (time.Time, error)
}

// Options configures New. Issuer, Store, Identities, Tokens, Keys, Verifier,
// Sessions, Admin and Key are required; zero durations mean the defaults.
type Options struct {
	// Issuer is the public base URL (RFC 8414 §2: https, no query or fragment);
	// endpoints live under it.
	Issuer     string
	Store      store.Store
	Identities Identities
	Tokens     *tokens.Issuer
	// Keys serves the JWKS at /oauth2/jwks.
	Keys *tokens.Keys
	// Verifier checks access tokens presented for revocation (their gid).
	Verifier *tokens.Verifier
	// Bus receives grant.revoke and relationship.add events; nil drops them.
	Bus *events.Bus
	// Sessions tells who is signed in on the /device pages (*authn.Sessions).
	Sessions SignedIn
	// Admin protects /api/v1/admin/clients (only administrators pass);
	// Actor names the administrator of a request for the audit log
	// (authn.Actor). Nil Actor records "admin".
	Admin func(http.Handler) http.Handler
	Actor func(*http.Request) string
	// Key (at least 32 bytes, the same on every node) keys the stored hashes
	// of client secrets, refresh tokens and device codes, the CSRF tokens of
	// the pages and the names of throttling counters.
	Key []byte
	// Audience are the platform's resources (RFC 8707): the issuer (its own
	// APIs) first, then the broker's and the gateway's when they are on;
	// default the issuer.
	Audience []string
	// MQTTAudience and GatewayAudience say which of Audience are the
	// broker's and the gateway's (empty when off): a client registered
	// without resources gets by default those its scopes need
	// (derivedResources).
	MQTTAudience, GatewayAudience string
	// Scopes clients may be registered with; nil allows any well-formed scope.
	Scopes []string
	// ThingScopes are the scopes of the client every thing is (thingClient).
	ThingScopes []string
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site *ui.Site
	// ScopeDescriptions say in words what a scope lets a client do, on the
	// consent pages; they replace or add to the built-in ones.
	ScopeDescriptions map[string]string
	// Certificates checks the client certificates of tls_client_auth; nil
	// accepts none (a command-line Server that serves nothing).
	Certificates Certificates
	// IDTokenAlg is advertised in the OpenID metadata; default ES256.
	IDTokenAlg string
	// RegistrationTokenHashes are the initial access tokens of dynamic client
	// registration (RFC 7591 §3), as RegistrationTokenHash(Key, token); none
	// disables /oauth2/register.
	RegistrationTokenHashes [][]byte
	// RegistrationScopes are the scopes a dynamically registered client may
	// be given: scope tokens, matched exactly, and mqtt:pub:<filter> /
	// mqtt:sub:<filter> patterns, which allow any filter they cover (MQTT 5
	// §4.7). Nil allows none: a registration token is shared with whoever
	// registers, so what it can mint is what the operator lists here.
	RegistrationScopes []string
	// Extensions are extension grant types served by other packages (UMA's
	// uma-ticket), by grant type URI.
	Extensions map[string]ExtensionGrant
	// Households decide whether a thing may act for a user (pairing and
	// tokens); nil: no household has a say.
	Households Households
	// ResourceServers are oauth.resourceServers: the clients that may
	// introspect the access tokens of audiences not issued to them
	// (ResourceServers.Disclose); nil: every client only its own tokens.
	ResourceServers ResourceServers

	AccessTokenLifetime  time.Duration // default 10 min
	RefreshTokenLifetime time.Duration // default 30 days
	DeviceCodeLifetime   time.Duration // default 10 min
	DeviceInterval       time.Duration // default 5 s (RFC 8628 §3.2)
	// UserCodeAttempts wrong user codes are allowed per user and per client
	// address within UserCodeWindow (defaults 5 and 10 min).
	UserCodeAttempts int
	UserCodeWindow   time.Duration

	// DPoPNonces makes DPoP proofs carry a server nonce (RFC 9449 §8) at the
	// token and UserInfo endpoints; nonces rotate every DPoPNonceRotation
	// (default 5 min) and are derived from Key, so every node accepts them.
	DPoPNonces        bool
	DPoPNonceRotation time.Duration

	// Registerer registers the metrics (thingid_oauth_tokens_total,
	// thingid_consent_decisions_total); nil: not registered.
	Registerer prometheus.Registerer

	Logger *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
}

// Server is the authorization server. It is safe for concurrent use.
type Server struct {
	opts   Options
	st     store.Store
	log    *slog.Logger
	now    func() time.Time
	issuer string

	secretKey, refreshKey, deviceKey, counterKey, nonceKey, thingSessionKey []byte

	kit     ui.Kit
	csrf    *ui.CSRF
	pages   pages
	cache   *readCache // nil when the store has no data version
	metrics *metrics
}

// New checks opts and returns the server.
func New(opts Options) (*Server, error) {
	u, err := url.Parse(opts.Issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return nil, fmt.Errorf("oauth: issuer %q: want an https URL without query or fragment (RFC 8414 §2)", opts.Issuer)
	}
	switch {
	case opts.Store == nil, opts.Identities == nil, opts.Tokens == nil, opts.Keys == nil, opts.Verifier == nil, opts.Sessions == nil, opts.Admin == nil:
		return nil, errors.New("oauth: Store, Identities, Tokens, Keys, Verifier, Sessions and Admin are required")
	case len(opts.Key) < 32:
		return nil, errors.New("oauth: Key must have at least 32 bytes")
	}
	for _, d := range []time.Duration{opts.AccessTokenLifetime, opts.RefreshTokenLifetime, opts.DeviceCodeLifetime, opts.DeviceInterval, opts.UserCodeWindow, opts.DPoPNonceRotation} {
		if d < 0 {
			return nil, errors.New("oauth: lifetimes and intervals must be positive")
		}
	}
	if opts.DeviceInterval%time.Second != 0 {
		// RFC 8628 §3.2: interval is a number of seconds on the wire.
		return nil, errors.New("oauth: DeviceInterval must be a whole number of seconds")
	}
	for _, h := range opts.RegistrationTokenHashes {
		if len(h) != sha256.Size {
			return nil, errors.New("oauth: RegistrationTokenHashes must be RegistrationTokenHash values (32 bytes)")
		}
	}
	if err := checkRegistrationScopes(opts.RegistrationScopes); err != nil {
		return nil, err
	}
	for _, sc := range append(slices.Clone(opts.Scopes), opts.ThingScopes...) {
		if !validScopeToken(sc) {
			return nil, fmt.Errorf("oauth: scope %q is not a valid scope token (RFC 6749 §3.3)", sc)
		}
	}
	opts.Issuer = strings.TrimSuffix(opts.Issuer, "/")
	if len(opts.Audience) == 0 {
		opts.Audience = []string{opts.Issuer}
	}
	opts.IDTokenAlg = cmp.Or(opts.IDTokenAlg, tokens.ES256)
	opts.AccessTokenLifetime = cmp.Or(opts.AccessTokenLifetime, 10*time.Minute)
	opts.RefreshTokenLifetime = cmp.Or(opts.RefreshTokenLifetime, 30*24*time.Hour)
	opts.DeviceCodeLifetime = cmp.Or(opts.DeviceCodeLifetime, 10*time.Minute)
	opts.DeviceInterval = cmp.Or(opts.DeviceInterval, 5*time.Second)
	opts.UserCodeAttempts = cmp.Or(opts.UserCodeAttempts, 5)
	opts.UserCodeWindow = cmp.Or(opts.UserCodeWindow, 10*time.Minute)
	opts.DPoPNonceRotation = cmp.Or(opts.DPoPNonceRotation, dpopNonceRotation)
	if opts.DPoPNonceRotation < time.Second {
		return nil, errors.New("oauth: DPoPNonceRotation must be at least a second")
	}
	if opts.Actor == nil {
		opts.Actor = func(*http.Request) string { return "admin" }
	}
	s := &Server{
		opts: opts, st: opts.Store, issuer: opts.Issuer,
		log: cmp.Or(opts.Logger, slog.Default()), now: opts.Now,
		secretKey:       derive(opts.Key, "thingid oauth client secret v1"),
		refreshKey:      derive(opts.Key, "thingid oauth refresh token v1"),
		deviceKey:       derive(opts.Key, "thingid oauth device code v1"),
		counterKey:      derive(opts.Key, "thingid oauth counters v1"),
		nonceKey:        derive(opts.Key, "thingid oauth dpop nonce v1"),
		thingSessionKey: derive(opts.Key, "thingid oauth thing session v1"),
		cache:           newReadCache(opts.Store),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.kit = ui.Kit{AssetPrefix: assetPrefix, Log: s.log, Site: opts.Site}
	s.csrf = ui.NewCSRF(derive(opts.Key, "thingid oauth csrf v1"), u.Scheme == "https")
	s.pages = parsePages(s.kit)
	s.metrics = newMetrics(opts.Registerer, s.grantTypes())
	return s, nil
}

// Register mounts every endpoint on mux.
func (s *Server) Register(mux routes.Mux) {
	meta := http.HandlerFunc(s.serveMetadata)
	mux.Handle("GET /.well-known/oauth-authorization-server", meta)
	mux.Handle("GET /.well-known/openid-configuration", meta)
	mux.Handle(pathJWKS, s.opts.Keys.JWKS())
	mux.HandleFunc(PathToken, s.serveToken)
	mux.HandleFunc(pathDeviceReq, s.serveDeviceAuthorization)
	mux.HandleFunc(pathRevoke, s.serveRevoke)
	mux.HandleFunc(pathIntrospect, s.serveIntrospect)
	if s.registrationEnabled() {
		mux.HandleFunc(pathRegister, s.serveRegister)
	}

	admin := s.opts.Admin
	mux.Handle("POST /api/v1/admin/clients", admin(http.HandlerFunc(s.apiCreateClient)))
	mux.Handle("GET /api/v1/admin/clients", admin(http.HandlerFunc(s.apiListClients)))
	mux.Handle("GET /api/v1/admin/clients/{id}", admin(http.HandlerFunc(s.apiGetClient)))
	mux.Handle("DELETE /api/v1/admin/clients/{id}", admin(http.HandlerFunc(s.apiDeleteClient)))

	cop := ui.CrossOrigin(s.issuer, http.HandlerFunc(s.crossOrigin))
	page := func(h http.HandlerFunc) http.Handler { return ui.SecurityHeaders(cop.Handler(h)) }
	mux.Handle("GET "+pathDevice, page(s.showDevice))
	mux.Handle("POST "+pathDevice, page(s.submitUserCode))
	mux.Handle("POST "+pathDevice+"/decision", page(s.submitDecision))
	mux.Handle("GET "+pathAuthorize, ui.SecurityHeaders(http.HandlerFunc(s.serveAuthorize)))
	// A form post from the client's site (OIDC Core §3.1.2.1): cross-origin by design.
	mux.Handle("POST "+pathAuthorize, ui.SecurityHeaders(http.HandlerFunc(s.serveAuthorize)))
	mux.Handle("POST "+pathAuthorizeDecision, page(s.submitAuthorizeDecision))
	mux.Handle(pathUserinfo, routes.AccessTokens(http.HandlerFunc(s.serveUserinfo)))
	mux.HandleFunc("GET "+pathCallHome, s.serveCallHome)
	mux.HandleFunc("POST "+pathThingSession, s.serveThingSession)
	mux.Handle("GET "+assetPrefix, s.kit.Assets())
	s.registerAccount(mux) // grants.go: grants, linked devices, unlinking
}

func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// keyedHash is the HMAC-SHA256 under which a secret is stored: a copy of the
// database yields no usable secret.
func keyedHash(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// counterName keys a throttling counter without storing addresses in clear.
func (s *Server) counterName(kind, v string) string {
	return "oauth-" + kind + ":" + hex.EncodeToString(keyedHash(s.counterKey, kind, v)[:16])
}

// revokeGrant revokes a grant (its refresh tokens go with it) for the
// token endpoint's replay rules and RFC 7009, audited and published as
// revokeAudited does; a grant missing or revoked already is left as it is.
func (s *Server) revokeGrant(ctx context.Context, actor, grantID, reason string) error {
	if err := s.revokeAudited(ctx, actor, "", grantID, reason); err != nil && !errors.Is(err, errNoGrant) {
		return err
	}
	return nil
}

func (s *Server) publishRevoke(actor, grantID, reason string, at time.Time) {
	exp := at.Add(s.opts.AccessTokenLifetime).Unix() + 1
	s.opts.Bus.Publish(events.Event{
		Type: tokens.EventGrantRevoke, Kind: "grant", ID: grantID, Actor: actor, Time: at.UTC(),
		Details: map[string]string{"exp": strconv.FormatInt(exp, 10), "reason": reason},
	})
	s.log.Info("oauth: grant revoked", "grant", grantID, "reason", reason, "actor", actor)
}

// audit appends one record; failures are logged, the operation stands.
func (s *Server) audit(ctx context.Context, tx store.Tx, actor, action string, target store.Ref, detail string) error {
	rec := store.AuditRecord{Time: s.now().UTC(), Actor: actor, Action: action, Target: target}
	if detail != "" {
		rec.Detail = []byte(detail)
	}
	return tx.AppendAudit(ctx, rec)
}

// activeSubjects refuses a grant whose user or thing is missing or disabled:
// no token is issued or refreshed for them (loaded on every use, so that a
// disable takes effect at the next request).
func (s *Server) activeSubjects(ctx context.Context, userID, thingID string) error {
	if userID != "" {
		u, err := s.opts.Identities.GetUser(ctx, userID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.Status != store.StatusActive) {
			return ErrInvalidGrant.WithDescription("the user of this grant is disabled or deleted")
		}
		if err != nil {
			return serverError(err)
		}
	}
	if thingID != "" {
		t, err := s.opts.Identities.GetThing(ctx, thingID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && t.Status != store.StatusActive) {
			return ErrInvalidGrant.WithDescription("the device of this grant is disabled or deleted")
		}
		if err != nil {
			return serverError(err)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "127.0.0.1" || host == "::1"
}
