// Package authn decides who is calling: for now the administrators of the admin
// APIs, by HTTP Basic (password) or by an admin API token. It never issues OAuth
// tokens and never changes identities.
package authn

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// AdminGroup is the group whose active members are administrators.
const AdminGroup = "administrators"

// TokenPrefix starts every admin API token so that leaked tokens are recognisable
// by secret scanners.
const TokenPrefix = "tid_adm_"

// Reader is what admin authentication reads from the store.
type Reader interface {
	GetUserByName(ctx context.Context, userName string) (*store.User, error)
	GetUser(ctx context.Context, id string) (*store.User, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)
	GetAPITokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error)
}

// Admins authenticates administrators.
type Admins struct {
	st       Reader
	tokenKey []byte
	access   *AccessTokens // nil: no OAuth access tokens

	mu    sync.Mutex
	cache map[[32]byte]cached // successful Basic verifications
}

// cached is a verified Basic credential: the user it named and the password
// hash it matched. A hit skips only argon2id; the user is read again on every
// request, so a changed password, a rename or a deletion (the hash or ID no
// longer match) and a disabled or demoted administrator (isAdmin) take effect
// at once.
type cached struct {
	userID string
	hash   string
	until  time.Time
}

// cacheFor bounds how long a verified Basic credential skips argon2id.
const cacheFor = 30 * time.Second

// NewAdmins returns an authenticator; tokenKey keys the hashes of API tokens.
func NewAdmins(st Reader, tokenKey []byte) *Admins {
	return &Admins{st: st, tokenKey: tokenKey, cache: map[[32]byte]cached{}}
}

// TokenHash is the keyed hash under which an API token is stored.
func TokenHash(tokenKey []byte, token string) []byte {
	m := hmac.New(sha256.New, tokenKey)
	m.Write([]byte(token))
	return m.Sum(nil)
}

// NewToken returns a fresh API token and its stored hash.
func NewToken(tokenKey []byte) (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, TokenHash(tokenKey, token)
}

// ErrUnauthenticated: no valid administrator credentials.
var ErrUnauthenticated = errors.New("administrator credentials required")

// errAdminMustChange refuses the right credentials of an administrator who
// still has a one-time password: it is both ErrUnauthenticated (401 wherever
// that is handled) and ErrPasswordChangeRequired (which says what to do).
var errAdminMustChange = fmt.Errorf("%w: %w", ErrUnauthenticated, ErrPasswordChangeRequired)

// MustChangeDetail is what a refused administrator with a one-time password is told.
const MustChangeDetail = "password change required: this administrator still has a one-time password; sign in at /signin (or POST /api/v1/signin) and change it (POST /api/v1/password) before using the admin APIs"

// Authenticate returns the administrator's user ID for the request's credentials.
func (a *Admins) Authenticate(r *http.Request) (string, error) {
	u, _, err := a.authenticateIn(r, AdminGroup)
	if err != nil {
		return "", err
	}
	return u.ID, nil
}

// authenticateIn returns the user whose credentials the request carries (an
// admin API token, or Basic) if that user is an active direct member of one
// of groups, and the first of groups it is a member of.
func (a *Admins) authenticateIn(r *http.Request, groups ...string) (*store.User, string, error) {
	ctx := r.Context()
	var u *store.User
	var err error
	if raw, ok := bearer(r); ok {
		u, err = a.token(ctx, raw)
	} else {
		u, err = a.basic(r)
	}
	if err != nil {
		return nil, "", err
	}
	group, err := a.inGroup(ctx, u, groups...)
	if err != nil {
		return nil, "", err
	}
	return u, group, nil
}

// basic returns the user whose name and password the request's Basic
// credentials carry.
func (a *Admins) basic(r *http.Request) (*store.User, error) {
	name, pw, ok := r.BasicAuth()
	if !ok {
		return nil, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(name + "\x00" + pw))
	a.mu.Lock()
	c, hit := a.cache[key]
	a.mu.Unlock()
	u, err := a.st.GetUserByName(r.Context(), name)
	if err != nil || u.PasswordHash == "" {
		password.Dummy(pw) // same cost as a wrong password: no user enumeration by timing
		return nil, ErrUnauthenticated
	}
	if hit && time.Now().Before(c.until) && c.userID == u.ID && c.hash == u.PasswordHash {
		return u, nil
	}
	if ok, err := password.Verify(u.PasswordHash, pw); err != nil || !ok {
		return nil, ErrUnauthenticated
	}
	a.mu.Lock()
	if len(a.cache) > 1000 {
		clear(a.cache)
	}
	a.cache[key] = cached{userID: u.ID, hash: u.PasswordHash, until: time.Now().Add(cacheFor)}
	a.mu.Unlock()
	return u, nil
}

// token returns the user an admin API token acts for.
func (a *Admins) token(ctx context.Context, token string) (*store.User, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return nil, ErrUnauthenticated
	}
	t, err := a.st.GetAPITokenByHash(ctx, TokenHash(a.tokenKey, token))
	if err != nil || (!t.ExpiresAt.IsZero() && time.Now().After(t.ExpiresAt)) {
		return nil, ErrUnauthenticated
	}
	u, err := a.st.GetUser(ctx, t.UserID)
	if err != nil {
		return nil, ErrUnauthenticated
	}
	return u, nil
}

// isAdmin requires an active user who is a direct member of the admin group.
func (a *Admins) isAdmin(ctx context.Context, u *store.User) error {
	_, err := a.inGroup(ctx, u, AdminGroup)
	return err
}

// inGroup requires an active user who is a direct member of one of groups
// and returns the first of groups it is a member of. The member must be the
// user itself: ids are unique per kind only, so a thing or group member
// sharing the user's id does not count.
func (a *Admins) inGroup(ctx context.Context, u *store.User, groups ...string) (string, error) {
	if u.Status != store.StatusActive {
		return "", ErrUnauthenticated
	}
	if u.MustChangePassword {
		// Checked after the credential: a wrong password learns nothing.
		return "", errAdminMustChange
	}
	var names store.Expr
	for _, g := range groups {
		c := store.Compare{Field: "displayName", Op: store.OpEq, Value: g}
		if names == nil {
			names = c
		} else {
			names = store.Or{Left: names, Right: c}
		}
	}
	found, _, err := a.st.ListGroups(ctx, store.Query{
		Filter: store.And{
			Left: names,
			Right: store.Any{Field: "members", Where: store.And{
				Left:  store.Compare{Field: "value", Op: store.OpEq, Value: u.ID},
				Right: store.Compare{Field: "type", Op: store.OpEq, Value: string(store.KindUser)},
			}},
		},
		Limit: len(groups),
	})
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		for _, f := range found {
			if strings.EqualFold(f.DisplayName, g) {
				return g, nil
			}
		}
	}
	return "", ErrUnauthenticated
}

// MemberOf returns the first of groups whose active direct member u is (a
// page that let u sign in asks which staff group u is in); ErrUnauthenticated
// when none, ErrPasswordChangeRequired while u has a one-time password.
func (a *Admins) MemberOf(ctx context.Context, u *store.User, groups ...string) (string, error) {
	return a.inGroup(ctx, u, groups...)
}

// IsAdministrator tells whether userID is an active administrator (for
// components that learn a user from a token and grant administrators more,
// like the MQTT broker's $SYS topics).
func (a *Admins) IsAdministrator(ctx context.Context, userID string) (bool, error) {
	u, err := a.st.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	switch err := a.isAdmin(ctx, u); {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, errAdminMustChange):
		return false, nil
	default:
		return false, err
	}
}

type actorKey struct{}

// fullAdminKey marks a request whose caller has every administrator power.
type fullAdminKey struct{}

// Require wraps next so that only administrators reach it; the actor
// ("admin:<id>") is in the request context for the audit log, and the caller
// has full administrator power (FullAdmin).
func (a *Admins) Require(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Authenticate(r)
		if err != nil {
			deny(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), actorKey{}, "admin:"+id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, fullAdminKey{}, true)))
	})
}

// SupportGroup is the group whose active members are support staff: they
// read what the read-only admin APIs serve (RequireReader) and change
// nothing.
const SupportGroup = "support"

type readOnlyKey struct{}

// RequireReader is Require for an admin API that only reads: administrators
// get in with full power, and so do active members of SupportGroup, read-only
// (ReadOnly tells), with the actor "support:<id>". Credentials are those of
// Require: Basic, or an admin API token of the user.
func (a *Admins) RequireReader(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, group, err := a.authenticateIn(r, AdminGroup, SupportGroup)
		if err != nil {
			deny(w, r, err)
			return
		}
		ctx := r.Context()
		if group == AdminGroup {
			ctx = context.WithValue(ctx, actorKey{}, "admin:"+u.ID)
			ctx = context.WithValue(ctx, fullAdminKey{}, true)
		} else {
			ctx = context.WithValue(ctx, actorKey{}, "support:"+u.ID)
			ctx = context.WithValue(ctx, readOnlyKey{}, true)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ReadOnly tells whether RequireReader let the caller in as support staff,
// whose reads are their own record in the audit log.
func ReadOnly(r *http.Request) bool {
	ro, _ := r.Context().Value(readOnlyKey{}).(bool)
	return ro
}

// Scopes that open admin APIs to OAuth access tokens.
const (
	ScopeAdmin     = "admin"      // every admin API
	ScopeSCIMRead  = "scim:read"  // SCIM reads
	ScopeSCIMWrite = "scim:write" // SCIM reads and writes
)

// AccessTokenVerifier checks OAuth access tokens with the evidence of their
// presentation (*tokens.Verifier).
type AccessTokenVerifier interface {
	Verify(ctx context.Context, p *tokens.Presentation, opts tokens.VerifyOptions) (*tokens.Claims, error)
}

// ErrInsufficientScope: a valid access token without the scope the request needs.
var ErrInsufficientScope = errors.New("the access token lacks the scope this request needs")

// TokenError is an OAuth access token refused at an admin API: Err wraps
// ErrUnauthenticated and a *tokens.Error (invalid_token) or a *dpop.Error
// (invalid_dpop_proof, use_dpop_nonce), or is ErrInsufficientScope. DPoP
// says the answer carries the DPoP challenge (RFC 9449 §7.1) rather than
// Bearer's.
type TokenError struct {
	Err  error
	DPoP bool
}

func (e *TokenError) Error() string { return e.Err.Error() }
func (e *TokenError) Unwrap() error { return e.Err }

// GrantReader reads grants (the store), so that a token whose grant was revoked
// is refused even by a node that restarted after the revocation event.
type GrantReader interface {
	GetGrant(ctx context.Context, id string) (*store.Grant, error)
}

// AccessTokens is how admin APIs accept OAuth access tokens.
type AccessTokens struct {
	// Verifier checks the tokens and their sender binding.
	Verifier AccessTokenVerifier
	// Audience is the identifier the tokens must be issued for.
	Audience string
	// Origin is the listener's public origin: a DPoP proof must be for
	// Origin + the request path (RFC 9449 §4.3 item 9).
	Origin string
	// Proofs checks DPoP proofs (*dpop.Verifier); Nonce is its current
	// server nonce, "" without (RFC 9449 §9).
	Proofs interface {
		tokens.ProofVerifier
		Nonce() string
	}
	// Grants is read for every token: the stored grant is the truth.
	Grants GrantReader
}

// AcceptAccessTokens lets RequireScopes accept OAuth access tokens, besides
// administrator credentials.
func (a *Admins) AcceptAccessTokens(at AccessTokens) { a.access = &at }

// RequireScopes is Require for an API that OAuth clients may call too: an
// access token, Bearer or DPoP (RFC 9449 §7.1) with its sender binding
// satisfied, must carry `admin`, or `write` (which includes reading), or
// `read` for a safe request (GET, HEAD, or a POST to a /.search endpoint). A
// token that acts for a user (sub is not the client itself) is accepted only
// while that user is an administrator: consenting to a client cannot make a
// user an administrator. Only administrator credentials and tokens carrying
// `admin` have full administrator power (FullAdmin): `write` provisions, but
// next must keep it from making or taking over administrators. The handler
// it returns is marked as accepting access tokens (routes.AccessTokens).
func (a *Admins) RequireScopes(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error), read, write string) http.Handler {
	admin := a.Require(next, deny)
	return routes.AccessTokens(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := a.access
		if at == nil {
			admin.ServeHTTP(w, r)
			return
		}
		// Malformed Authorization and other schemes (Basic) are the
		// administrator path's to refuse or accept; so are admin API tokens.
		p, err := tokens.FromRequest(r, at.Origin+r.URL.EscapedPath(), tokens.PeerCertificates(r))
		if err != nil || p.Token() == "" || (p.Scheme() == tokens.SchemeBearer && strings.HasPrefix(p.Token(), TokenPrefix)) {
			admin.ServeHTTP(w, r)
			return
		}
		if p.Scheme() == tokens.SchemeDPoP {
			if n := at.Proofs.Nonce(); n != "" {
				w.Header().Set("DPoP-Nonce", n)
			}
		}
		c, err := at.Verifier.Verify(r.Context(), p, tokens.VerifyOptions{Audience: at.Audience, Proofs: at.Proofs})
		if err != nil {
			if errors.As(err, new(*tokens.Error)) || errors.As(err, new(*dpop.Error)) {
				err = &TokenError{Err: fmt.Errorf("%w: %w", ErrUnauthenticated, err), DPoP: p.DPoP()}
			}
			deny(w, r, err)
			return
		}
		// The verifier's deny set only knows revocations it saw; the grant's
		// stored state is the truth for admin APIs, which are worth one read.
		if g, err := at.Grants.GetGrant(r.Context(), c.GrantID); err != nil || !g.RevokedAt.IsZero() {
			deny(w, r, &TokenError{Err: fmt.Errorf("%w: %w", ErrUnauthenticated, tokens.ErrRevoked), DPoP: p.DPoP()})
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead ||
			(r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/.search"))
		if !slices.Contains(c.Scope, ScopeAdmin) && !slices.Contains(c.Scope, write) && !(safe && slices.Contains(c.Scope, read)) {
			deny(w, r, &TokenError{Err: ErrInsufficientScope, DPoP: p.DPoP()})
			return
		}
		actor := "client:" + c.ClientID
		if c.Subject != c.ClientID {
			u, err := a.st.GetUser(r.Context(), c.Subject)
			if err != nil {
				deny(w, r, ErrUnauthenticated)
				return
			}
			if err := a.isAdmin(r.Context(), u); err != nil {
				deny(w, r, &TokenError{Err: ErrInsufficientScope, DPoP: p.DPoP()})
				return
			}
			actor = "admin:" + u.ID + " via client:" + c.ClientID
		}
		ctx := context.WithValue(r.Context(), actorKey{}, actor)
		ctx = context.WithValue(ctx, fullAdminKey{}, slices.Contains(c.Scope, ScopeAdmin))
		next.ServeHTTP(w, r.WithContext(ctx))
	}))
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// Actor returns the actor that Require put in the request context, or "".
func Actor(r *http.Request) string {
	s, _ := r.Context().Value(actorKey{}).(string)
	return s
}

// FullAdmin tells whether Require or RequireScopes let the caller in with full
// administrator power: administrator credentials (password, admin API token)
// or an access token with the `admin` scope. A token with only the API's
// `write` scope is not, even one acting for an administrator: the scope is
// what the administrator consented to delegate.
func FullAdmin(r *http.Request) bool {
	full, _ := r.Context().Value(fullAdminKey{}).(bool)
	return full
}
