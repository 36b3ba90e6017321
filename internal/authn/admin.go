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

	"github.com/thingid/thingid/internal/password"
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
	verifier AccessTokenVerifier
	audience string
	grants   GrantReader

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
	ctx := r.Context()
	if raw, ok := bearer(r); ok {
		return a.token(ctx, raw)
	}
	name, pw, ok := r.BasicAuth()
	if !ok {
		return "", ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(name + "\x00" + pw))
	a.mu.Lock()
	c, hit := a.cache[key]
	a.mu.Unlock()
	u, err := a.st.GetUserByName(ctx, name)
	if err != nil || u.PasswordHash == "" {
		password.Dummy(pw) // same cost as a wrong password: no user enumeration by timing
		return "", ErrUnauthenticated
	}
	if !hit || !time.Now().Before(c.until) || c.userID != u.ID || c.hash != u.PasswordHash {
		if ok, err := password.Verify(u.PasswordHash, pw); err != nil || !ok {
			return "", ErrUnauthenticated
		}
		hit = false
	}
	if err := a.isAdmin(ctx, u); err != nil {
		return "", err
	}
	if !hit {
		a.mu.Lock()
		if len(a.cache) > 1000 {
			clear(a.cache)
		}
		a.cache[key] = cached{userID: u.ID, hash: u.PasswordHash, until: time.Now().Add(cacheFor)}
		a.mu.Unlock()
	}
	return u.ID, nil
}

func (a *Admins) token(ctx context.Context, token string) (string, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return "", ErrUnauthenticated
	}
	t, err := a.st.GetAPITokenByHash(ctx, TokenHash(a.tokenKey, token))
	if err != nil || (!t.ExpiresAt.IsZero() && time.Now().After(t.ExpiresAt)) {
		return "", ErrUnauthenticated
	}
	u, err := a.st.GetUser(ctx, t.UserID)
	if err != nil {
		return "", ErrUnauthenticated
	}
	if err := a.isAdmin(ctx, u); err != nil {
		return "", err
	}
	return u.ID, nil
}

// isAdmin requires an active user who is a direct member of the admin group.
// The member must be the user itself: ids are unique per kind only, so a thing
// or group member sharing the user's id does not count.
func (a *Admins) isAdmin(ctx context.Context, u *store.User) error {
	if u.Status != store.StatusActive {
		return ErrUnauthenticated
	}
	if u.MustChangePassword {
		// Checked after the credential: a wrong password learns nothing.
		return errAdminMustChange
	}
	groups, _, err := a.st.ListGroups(ctx, store.Query{
		Filter: store.And{
			Left: store.Compare{Field: "displayName", Op: store.OpEq, Value: AdminGroup},
			Right: store.Any{Field: "members", Where: store.And{
				Left:  store.Compare{Field: "value", Op: store.OpEq, Value: u.ID},
				Right: store.Compare{Field: "type", Op: store.OpEq, Value: string(store.KindUser)},
			}},
		},
		Limit: 1,
	})
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return ErrUnauthenticated
	}
	return nil
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

// Require wraps next so that only administrators reach it; the actor
// ("admin:<id>") is in the request context for the audit log.
func (a *Admins) Require(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Authenticate(r)
		if err != nil {
			deny(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, "admin:"+id)))
	})
}

// Scopes that open admin APIs to OAuth access tokens.
const (
	ScopeAdmin     = "admin"      // every admin API
	ScopeSCIMRead  = "scim:read"  // SCIM reads
	ScopeSCIMWrite = "scim:write" // SCIM reads and writes
)

// AccessTokenVerifier checks OAuth access tokens (*tokens.Verifier).
type AccessTokenVerifier interface {
	Verify(ctx context.Context, raw string, opts tokens.VerifyOptions) (*tokens.Claims, error)
}

// ErrInsufficientScope: a valid access token without the scope the request needs.
var ErrInsufficientScope = errors.New("the access token lacks the scope this request needs")

// GrantReader reads grants (the store), so that a token whose grant was revoked
// is refused even by a node that restarted after the revocation event.
type GrantReader interface {
	GetGrant(ctx context.Context, id string) (*store.Grant, error)
}

// AcceptAccessTokens lets RequireScopes accept OAuth access tokens issued for
// audience, checked by v and by their grant in grants, besides administrator
// credentials.
func (a *Admins) AcceptAccessTokens(v AccessTokenVerifier, audience string, grants GrantReader) {
	a.verifier, a.audience, a.grants = v, audience, grants
}

// RequireScopes is Require for an API that OAuth clients may call too: a bearer
// access token must carry `admin`, or `write` (which includes reading), or `read`
// for a safe request (GET, HEAD, or a POST to a /.search endpoint). A token that
// acts for a user (sub is not the client itself) is accepted only while that user
// is an administrator: consenting to a client cannot make a user an administrator.
func (a *Admins) RequireScopes(next http.Handler, deny func(w http.ResponseWriter, r *http.Request, err error), read, write string) http.Handler {
	admin := a.Require(next, deny)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok || a.verifier == nil || strings.HasPrefix(raw, TokenPrefix) {
			admin.ServeHTTP(w, r)
			return
		}
		c, err := a.verifier.Verify(r.Context(), raw, tokens.VerifyOptions{Audience: a.audience})
		if err != nil {
			deny(w, r, fmt.Errorf("%w: %w", ErrUnauthenticated, err))
			return
		}
		// The verifier's deny set only knows revocations it saw; the grant's
		// stored state is the truth for admin APIs, which are worth one read.
		if g, err := a.grants.GetGrant(r.Context(), c.GrantID); err != nil || !g.RevokedAt.IsZero() {
			deny(w, r, ErrUnauthenticated)
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead ||
			(r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/.search"))
		if !slices.Contains(c.Scope, ScopeAdmin) && !slices.Contains(c.Scope, write) && !(safe && slices.Contains(c.Scope, read)) {
			deny(w, r, ErrInsufficientScope)
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
				deny(w, r, ErrInsufficientScope)
				return
			}
			actor = "admin:" + u.ID + " via client:" + c.ClientID
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	})
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
