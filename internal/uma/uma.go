// Package uma is thingid's User-Managed Access 2.0 (the Kantara UMA 2.0 Grant
// and Federated Authorization recommendations): the uma2-configuration
// document, the protection API for resource servers (resource registration,
// permission tickets, RPT introspection), the UMA grant that the oauth token
// endpoint hands to it with its claims-interaction endpoint, and the owners'
// sharing API and pages. It owns the UMA tables of the store; it issues RPTs
// through Tokens and revokes them as grants (the grant.revoke event). It must
// not authenticate clients (the oauth token
// endpoint does, then calls Grant), verify tokens itself (Tokens does) or
// change identities.
package uma

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/ui"
)

// Wire identifiers.
const (
	// GrantType is the UMA grant (UMA 2.0 Grant §3.3.1).
	GrantType = "urn:ietf:params:oauth:grant-type:uma-ticket"
	// ScopeProtection makes an access token a PAT (Federated Authorization §1.3.1).
	ScopeProtection = "uma_protection"
	// FormatIDToken is the claim token format of an OpenID Connect ID token
	// (UMA 2.0 Grant §3.3.1).
	FormatIDToken = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken"
	// FormatAccessToken is thingid's claim token format for one of its own
	// access tokens that acts for a user: the client presents the access
	// token it holds for its user (a paired device, its device-flow token),
	// and the user is the requesting party.
	FormatAccessToken = "urn:thingid:params:uma:claim-token-format:access_token"
	// GrantScope labels the grants RPTs are issued under.
	GrantScope = "uma_rpt"
)

// Paths, relative to the issuer.
const (
	PathConfiguration = "/.well-known/uma2-configuration"
	pathResourceSet   = "/uma/resource_set"
	pathPermission    = "/uma/permission"
	pathIntrospect    = "/uma/introspect"
	pathClaims        = "/uma/claims"
	pathSharing       = "/account/sharing"
)

// ThingScopes are the scopes of the resource every owned thing is.
var ThingScopes = []string{"use", "configure", "telemetry:read"}

// Tokens is how this package meets tokens: verifying what clients present
// and signing RPTs. internal/server adapts *tokens.Verifier and
// *tokens.Issuer to it.
type Tokens interface {
	// Request verifies the access token of r's Authorization header (Bearer,
	// or DPoP with its proof) for this authorization server, with its
	// sender binding (DPoP key, client certificate) and the deny set. A
	// refused token is a *tokens.Error; other errors are the server's.
	Request(r *http.Request) (*tokens.Claims, error)
	// Presented verifies raw, an access token of this platform that the
	// client of a token request hands over (a claim token, an RPT to
	// upgrade): signature, claims, deny set, and its sender binding against
	// cnf, the keys that token request proved (nil for none).
	Presented(ctx context.Context, raw string, cnf *tokens.Confirmation) (*tokens.Claims, error)
	// Inspect verifies raw, a token that is the subject of a request, not
	// its credential (introspection): signature, claims, deny set, no binding.
	Inspect(ctx context.Context, raw string) (*tokens.Claims, error)
	// IDToken verifies raw, an ID token issued to client.
	IDToken(ctx context.Context, raw, client string) (*tokens.Claims, error)
	// Sign signs an access token (RFC 9068).
	Sign(c tokens.Claims) (string, error)
}

// Users looks users up (*identity.Service), so that names are normalized as
// they were when stored.
type Users interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByName(ctx context.Context, name string) (*store.User, error)
}

// SignedIn returns the signed-in user of a browser or API request
// (*authn.Sessions).
type SignedIn interface {
	User(r *http.Request) (*store.User, error)
}

// Options configures New. Issuer, Store, Users, Tokens, Sessions, Decider
// and Key are required.
type Options struct {
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site     *ui.Site
	Issuer   string
	Store    store.Store
	Users    Users
	Tokens   Tokens
	Sessions SignedIn
	// Decider decides the conditions of shares and audits their refusals.
	Decider Decider
	// Bus receives grant.revoke when a share is revoked; nil drops it.
	Bus *events.Bus
	// Key (at least 32 bytes, the same on every node) keys the stored
	// hashes of tickets and PCTs.
	Key []byte
	// Audience of RPTs; default the issuer.
	Audience []string
	// TrustedResourceServers are the client ids that may use a PAT obtained
	// with client_credentials, naming owners explicitly: first-party
	// resource servers only.
	TrustedResourceServers []string
	// Metadata returns the OAuth authorization server metadata (RFC 8414),
	// which the UMA configuration extends.
	Metadata func() any

	TicketLifetime time.Duration // default 5 min
	RPTLifetime    time.Duration // default 10 min
	PCTLifetime    time.Duration // default 30 days

	Logger *slog.Logger
	Now    func() time.Time
}

// Server serves UMA. It is safe for concurrent use.
type Server struct {
	opts              Options
	st                store.Store
	log               *slog.Logger
	now               func() time.Time
	issuer            string
	ticketKey, pctKey []byte

	kit   ui.Kit
	csrf  *ui.CSRF
	pages pages
}

// New checks opts and returns the server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Issuer == "", opts.Store == nil, opts.Users == nil, opts.Tokens == nil, opts.Sessions == nil, opts.Decider == nil:
		return nil, errors.New("uma: Issuer, Store, Users, Tokens, Sessions and Decider are required")
	case len(opts.Key) < 32:
		return nil, errors.New("uma: Key must have at least 32 bytes")
	case opts.TicketLifetime < 0 || opts.RPTLifetime < 0 || opts.PCTLifetime < 0:
		return nil, errors.New("uma: lifetimes must be positive")
	}
	iss, err := url.Parse(opts.Issuer)
	if err != nil {
		return nil, fmt.Errorf("uma: issuer: %w", err)
	}
	opts.Issuer = strings.TrimSuffix(opts.Issuer, "/")
	if len(opts.Audience) == 0 {
		opts.Audience = []string{opts.Issuer}
	}
	opts.TicketLifetime = cmp.Or(opts.TicketLifetime, 5*time.Minute)
	opts.RPTLifetime = cmp.Or(opts.RPTLifetime, 10*time.Minute)
	opts.PCTLifetime = cmp.Or(opts.PCTLifetime, 30*24*time.Hour)
	s := &Server{opts: opts, st: opts.Store, issuer: opts.Issuer, log: cmp.Or(opts.Logger, slog.Default()), now: opts.Now,
		ticketKey: derive(opts.Key, "thingid uma ticket v1"), pctKey: derive(opts.Key, "thingid uma pct v1")}
	if s.now == nil {
		s.now = time.Now
	}
	s.kit = ui.Kit{AssetPrefix: assetPrefix, Log: s.log, Site: s.opts.Site}
	s.csrf = ui.NewCSRF(derive(opts.Key, "thingid uma csrf v1"), iss.Scheme == "https")
	s.pages = parsePages(s.kit)
	return s, nil
}

// Register mounts the discovery document, the protection API, the owners'
// API and the owners' pages on mux. The grant is served by the oauth token endpoint
// (Grant).
func (s *Server) Register(mux routes.Mux) {
	mux.HandleFunc("GET "+PathConfiguration, s.serveConfiguration)
	// The protection API accepts PATs, access tokens with their sender
	// binding (routes.AccessTokens puts them in the route table's walk).
	pat := func(f http.HandlerFunc) http.Handler { return routes.AccessTokens(f) }
	mux.Handle("POST "+pathResourceSet, pat(s.createResource))
	mux.Handle("GET "+pathResourceSet, pat(s.listResources))
	mux.Handle("GET "+pathResourceSet+"/{id}", pat(s.readResource))
	mux.Handle("PUT "+pathResourceSet+"/{id}", pat(s.updateResource))
	mux.Handle("DELETE "+pathResourceSet+"/{id}", pat(s.deleteResource))
	mux.HandleFunc(pathResourceSet+"/{id}", methodNotAllowed("GET, PUT, DELETE"))
	mux.HandleFunc(pathResourceSet, methodNotAllowed("GET, POST"))
	mux.Handle("POST "+pathPermission, pat(s.servePermission))
	mux.HandleFunc(pathPermission, methodNotAllowed("POST"))
	mux.Handle("POST "+pathIntrospect, pat(s.serveIntrospect))
	mux.HandleFunc(pathIntrospect, methodNotAllowed("POST"))
	// The claims-interaction endpoint (interaction.go): pages, the decision
	// refused cross-site.
	cop := ui.CrossOrigin(s.issuer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.kit.Render(w, r, http.StatusForbidden, s.pages.claims, claimsView{Error: s.kit.Translator(r)("Cross-site request refused.")})
	}))
	mux.Handle("GET "+pathClaims, ui.SecurityHeaders(http.HandlerFunc(s.showInteraction)))
	mux.Handle("POST "+pathClaims, ui.SecurityHeaders(cop.Handler(http.HandlerFunc(s.submitInteraction))))
	s.registerSharing(mux)
	s.registerPages(mux)
}

func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

func keyedHash(key []byte, v string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return m.Sum(nil)
}

// audit appends one record in tx.
func (s *Server) audit(ctx context.Context, tx store.Tx, actor, action string, target store.Ref, detail string) error {
	rec := store.AuditRecord{Time: s.now().UTC(), Actor: actor, Action: action, Target: target}
	if detail != "" {
		rec.Detail = []byte(detail)
	}
	return tx.AppendAudit(ctx, rec)
}

// resourceRef names a UMA resource in the audit log.
func resourceRef(id string) store.Ref { return store.Ref{Kind: "uma_resource", ID: id} }

// revokeGrants revokes the grants RPTs were issued under and publishes
// grant.revoke for each, per the tokens.EventGrantRevoke contract, so that
// every verifier (the gateway, the broker, introspection) refuses them at
// once.
func (s *Server) revokeGrants(ctx context.Context, actor, reason string, ids []string) error {
	now := s.now()
	var errs []error
	for _, id := range ids {
		err := s.st.RevokeGrant(ctx, id, now)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		exp := now.Add(s.opts.RPTLifetime).Unix() + 1
		s.opts.Bus.Publish(events.Event{
			Type: tokens.EventGrantRevoke, Kind: "grant", ID: id, Actor: actor, Time: now.UTC(),
			Details: map[string]string{"exp": strconv.FormatInt(exp, 10), "reason": reason},
		})
		s.log.Info("uma: RPT grant revoked", "grant", id, "reason", reason, "actor", actor)
	}
	return errors.Join(errs...)
}

// userGroups returns the groups u belongs to, directly or through nested
// groups (up to a fixed depth, which bounds a cycle).
func (s *Server) userGroups(ctx context.Context, userID string) ([]string, error) {
	var out []string
	frontier := []store.Ref{{Kind: store.KindUser, ID: userID}}
	for depth := 0; depth < 8 && len(frontier) > 0; depth++ {
		var next []store.Ref
		for _, from := range frontier {
			rels, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelMember, From: &from})
			if err != nil {
				return nil, err
			}
			for _, r := range rels {
				if r.To.Kind == store.KindGroup && !slices.Contains(out, r.To.ID) {
					out = append(out, r.To.ID)
					next = append(next, r.To)
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// activeUser loads a user and checks it is active.
func (s *Server) activeUser(ctx context.Context, id string) (*store.User, bool, error) {
	u, err := s.opts.Users.GetUser(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return u, u.Status == store.StatusActive, nil
}

// liveGrant tells whether grant id stands (not revoked) in the store, the
// truth across nodes.
func (s *Server) liveGrant(ctx context.Context, id string) (*store.Grant, bool, error) {
	g, err := s.st.GetGrant(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return g, g.RevokedAt.IsZero(), nil
}
