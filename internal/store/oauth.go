package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrUsed: a one-time credential (authorization code, refresh token, device code,
// JWT ID) was presented a second time. The caller must treat it as an attack on
// the grant it belongs to (RFC 9700 §4.14.2, RFC 6749 §10.5).
var ErrUsed = errors.New("already used")

// ClientType says whether a client can keep a secret (RFC 6749 §2.1).
type ClientType string

const (
	ClientConfidential ClientType = "confidential"
	ClientPublic       ClientType = "public"
)

// Client is an OAuth 2.0 client. Things are clients too: ThingID names the thing
// a client stands for.
type Client struct {
	Meta
	Name string
	Type ClientType
	// SecretHash is the keyed hash of the client secret; nil when the client
	// authenticates otherwise (private_key_jwt, none, mutual TLS).
	SecretHash []byte
	// TokenEndpointAuthMethod per RFC 7591 §2: client_secret_basic,
	// client_secret_post, private_key_jwt, none, tls_client_auth, ...
	TokenEndpointAuthMethod string
	RedirectURIs            []string
	GrantTypes              []string
	// Scopes the client may ask for.
	Scopes []string
	// Resources are the resource indicators (RFC 8707) the client may ask
	// tokens for: the audiences of its access tokens. nil for every
	// resource of the platform (and for clients stored before resources
	// existed, which had every one).
	Resources []string
	// DefaultResources are the audiences of a token whose request names
	// no resource; a subset of Resources.
	DefaultResources []string
	// JWKS holds the client's public keys for private_key_jwt (RFC 7517 JSON).
	JWKS     json.RawMessage
	ThingID  string
	Disabled bool
}

// Grant is one authorization: a user (or, for client_credentials, nobody) lets a
// client act with scopes. Every token carries its grant's ID; revoking the grant
// ends them all.
type Grant struct {
	ID        string
	UserID    string // empty for the client's own grant
	ClientID  string
	ThingID   string // the thing the client stands for, if any
	Scopes    []string
	Created   time.Time
	LastUsed  time.Time
	RevokedAt time.Time // zero while valid
}

// GrantFilter selects grants; zero fields match anything.
type GrantFilter struct {
	UserID         string
	ClientID       string
	ThingID        string
	IncludeRevoked bool
}

// RefreshToken is stored under the keyed hash of its value.
type RefreshToken struct {
	Hash      []byte
	GrantID   string
	ClientID  string
	Scopes    []string
	Created   time.Time
	ExpiresAt time.Time
	// UsedAt is set when the token was rotated; presenting it again is reuse.
	UsedAt time.Time
	// DPoPJKT binds the token of a public client to a DPoP key (RFC 9449 §5).
	DPoPJKT string
	// Resources are those of the original grant (RFC 8707 §2.2): a refresh
	// may name some of them, and without a resource its access token is for
	// all of them. Nil for a token stored before they were kept.
	Resources []string
}

// AuthCode is an authorization code (RFC 6749 §4.1), stored under its hash.
type AuthCode struct {
	Hash                []byte
	ClientID            string
	UserID              string
	SessionID           string
	RedirectURI         string
	Scopes              []string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	// DPoPJKT binds the code to a DPoP key (RFC 9449 §10); "" for none.
	DPoPJKT string
	// Resources the authorization request named (RFC 8707 §2.1); the
	// tokens of the code are for them. nil when it named none.
	Resources []string
	AuthTime  time.Time
	ExpiresAt time.Time
	GrantID   string
	UsedAt    time.Time
}

// DeviceCodeStatus is where a device authorization request stands (RFC 8628).
type DeviceCodeStatus string

const (
	DevicePending  DeviceCodeStatus = "pending"
	DeviceApproved DeviceCodeStatus = "approved"
	DeviceDenied   DeviceCodeStatus = "denied"
	DeviceUsed     DeviceCodeStatus = "used" // tokens were issued
)

// DeviceCode is a device authorization request, stored under the hash of the
// device code; UserCode (normalized, without the dash) is unique among live codes.
type DeviceCode struct {
	Hash       []byte
	UserCode   string
	ClientID   string
	Scopes     []string
	Created    time.Time
	ExpiresAt  time.Time
	Interval   time.Duration
	LastPolled time.Time
	Status     DeviceCodeStatus
	UserID     string // who approved or denied
	GrantID    string // set on approval
	// Resources the device authorization request named (RFC 8707 §2);
	// nil when it named none. Fixed at creation.
	Resources []string
	Revision  int64
}

// Session is a signed-in browser session, stored under the hash of its cookie value.
type Session struct {
	Hash      []byte
	UserID    string
	Created   time.Time
	AuthTime  time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	RemoteIP  string
	UserAgent string
}

// Consent remembers that a user allowed a client some scopes.
type Consent struct {
	UserID   string
	ClientID string
	Scopes   []string
	Created  time.Time
}

// SigningKey is a platform token-signing key; the private key is sealed with the
// master key. Keys are published in the JWKS from Created until ExpiresAt (the
// end of the lifetime of the last token it may have signed).
type SigningKey struct {
	KID       string
	Alg       string          // ES256, EdDSA, RS256
	Sealed    []byte          // PKCS#8, sealed
	Public    json.RawMessage // public JWK
	Created   time.Time
	RetiredAt time.Time // zero while it signs new tokens
	ExpiresAt time.Time // zero while active; after it, the key is no longer published
}

// Clients stores OAuth clients; GetClient of a missing ID is ErrNotFound.
// CreateClient sets Meta as for identities (the ID may be chosen: a
// hand-registered client_id). ListClients pages in creation order; limit is as
// in Query (0: only the total, negative: no limit). DeleteClient deletes the
// client only: its grants are the caller's to revoke (ListGrants by ClientID,
// then RevokeGrant, in one WithTx), so that it can publish the revocations.
type Clients interface {
	CreateClient(ctx context.Context, c *Client) error
	GetClient(ctx context.Context, id string) (*Client, error)
	UpdateClient(ctx context.Context, id string, ifRevision int64, fn func(*Client) error) (*Client, error)
	DeleteClient(ctx context.Context, id string) error
	ListClients(ctx context.Context, offset, limit int) ([]*Client, int, error)
}

// Grants stores grants. RevokeGrant also deletes the grant's refresh tokens and
// unused authorization codes in the same transaction; revoking again keeps the
// first RevokedAt. GetGrant returns revoked grants too; ListGrants returns them
// only with IncludeRevoked. TouchGrant never moves LastUsed back.
//
// Deleting a user or thing (DeleteUser, DeleteThing) revokes nothing: the
// caller revokes its grants in the same transaction and publishes the
// revocations. Grants, sessions and consents left pointing at a missing
// identity are inert: IDs are never reused, and the authorization server
// loads the user or thing on every use.
type Grants interface {
	CreateGrant(ctx context.Context, g *Grant) error
	GetGrant(ctx context.Context, id string) (*Grant, error)
	ListGrants(ctx context.Context, f GrantFilter) ([]*Grant, error)
	RevokeGrant(ctx context.Context, id string, at time.Time) error
	TouchGrant(ctx context.Context, id string, at time.Time) error
	// RevokedGrantsSince returns the grants revoked after since, with when
	// (the first revocation's time): what a node that starts, and so missed
	// the revocation events, must refuse the access tokens of.
	RevokedGrantsSince(ctx context.Context, since time.Time) (map[string]time.Time, error)
	// Standing reads, in one statement, what a credential stands on: the
	// grant, the thing and the user of k. An empty id is not read; an id of
	// nothing stored is reported not Found, never as ErrNotFound.
	Standing(ctx context.Context, k StandingKeys) (Standing, error)
}

// StandingKeys names what Grants.Standing reads; "" is not read.
type StandingKeys struct {
	Grant, Thing, User string
}

// Standing is what a resource server checks, on every use of a credential,
// of the grant, the thing and the user it names (the broker at each
// CONNECT): whether each is stored, and the little it needs of each.
type Standing struct {
	Grant GrantStanding
	Thing ThingStanding
	User  UserStanding
}

// GrantStanding is a grant's part of a Standing: revoked or not, and whose.
type GrantStanding struct {
	Found            bool
	ClientID, UserID string
	RevokedAt        time.Time // zero while valid
}

// ThingStanding is a thing's part of a Standing.
type ThingStanding struct {
	Found  bool
	Status Status
	Model  string
}

// UserStanding is a user's part of a Standing.
type UserStanding struct {
	Found  bool
	Status Status
}

// RefreshTokens stores refresh tokens.
type RefreshTokens interface {
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error
	// UseRefreshToken marks the token rotated at `at` and returns it. A token
	// rotated before is returned with ErrUsed (so the caller can revoke its grant);
	// an unknown, expired (at `at`; a zero ExpiresAt never expires) or revoked
	// one is ErrNotFound. Of concurrent callers exactly one succeeds.
	UseRefreshToken(ctx context.Context, hash []byte, at time.Time) (*RefreshToken, error)
	// GetRefreshToken returns the token without using it, rotated or not;
	// an unknown, expired (at `at`) or revoked one is ErrNotFound.
	GetRefreshToken(ctx context.Context, hash []byte, at time.Time) (*RefreshToken, error)
}

// AuthCodes stores authorization codes.
type AuthCodes interface {
	CreateAuthCode(ctx context.Context, c *AuthCode) error
	// UseAuthCode marks the code used and returns it; a second use returns the
	// code with ErrUsed (also after its grant was revoked), an unknown or
	// expired (at `at`) one ErrNotFound, as is an unused one of a revoked grant.
	// Of concurrent callers exactly one succeeds.
	UseAuthCode(ctx context.Context, hash []byte, at time.Time) (*AuthCode, error)
}

// DeviceCodes stores device authorization requests; an expired one is
// ErrNotFound everywhere. Created defaults to now and Status to pending.
type DeviceCodes interface {
	CreateDeviceCode(ctx context.Context, d *DeviceCode) error // ErrConflict on a live duplicate user code
	GetDeviceCode(ctx context.Context, hash []byte) (*DeviceCode, error)
	// GetDeviceCodeByUserCode matches exactly: the caller normalizes what the user typed.
	GetDeviceCodeByUserCode(ctx context.Context, userCode string) (*DeviceCode, error)
	// UpdateDeviceCode changes a request under optimistic concurrency (Revision),
	// re-running fn on a concurrent change. fn may change Scopes, Interval,
	// LastPolled, Status, UserID and GrantID; the rest is kept.
	UpdateDeviceCode(ctx context.Context, hash []byte, fn func(*DeviceCode) error) (*DeviceCode, error)
}

// Sessions stores browser sessions. TouchSession never moves LastSeen back;
// it, DeleteSession and GetSession are ErrNotFound for a missing session, and
// ListSessions returns only live ones.
type Sessions interface {
	CreateSession(ctx context.Context, s *Session) error
	GetSession(ctx context.Context, hash []byte) (*Session, error) // ErrNotFound when missing or expired
	TouchSession(ctx context.Context, hash []byte, at time.Time) error
	DeleteSession(ctx context.Context, hash []byte) error
	ListSessions(ctx context.Context, userID string) ([]*Session, error)
	DeleteUserSessions(ctx context.Context, userID string) error
}

// Consents stores remembered consent.
type Consents interface {
	PutConsent(ctx context.Context, c *Consent) error // replaces the user's consent for the client
	GetConsent(ctx context.Context, userID, clientID string) (*Consent, error)
	DeleteConsent(ctx context.Context, userID, clientID string) error
}

// SigningKeys stores the platform's token-signing keys.
type SigningKeys interface {
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns all keys, expired ones included, oldest first.
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error)
	// RetireSigningKey stops a key signing at `at`; it stays published until
	// expiresAt. Retiring again keeps the first RetiredAt and sets ExpiresAt.
	RetireSigningKey(ctx context.Context, kid string, at, expiresAt time.Time) error
}

// Replay remembers one-time identifiers (JWT IDs of client assertions and DPoP
// proofs) until they expire, across all nodes.
type Replay interface {
	// UseOnce records key until expiresAt; ErrUsed if it is recorded already.
	UseOnce(ctx context.Context, key string, expiresAt time.Time) error
}

// Counters count failures per key (sign-in attempts per account or IP) for
// brute-force defence across nodes.
type Counters interface {
	// AddFailure increments key's counter, which resets when `window` passed since
	// its first failure, and returns the new count and when the window started.
	AddFailure(ctx context.Context, key string, at time.Time, window time.Duration) (count int, since time.Time, err error)
	// GetFailures returns the count within the window that started at since
	// (zero count when none or when the window passed).
	GetFailures(ctx context.Context, key string, at time.Time, window time.Duration) (count int, since time.Time, err error)
	ResetFailures(ctx context.Context, key string) error
}

// OAuth is everything the authorization server stores. Expired rows (sessions,
// codes, replay records, counters) are ignored, not deleted: nothing purges
// them yet.
type OAuth interface {
	Clients
	Grants
	RefreshTokens
	AuthCodes
	DeviceCodes
	Sessions
	Consents
	SigningKeys
	Replay
	Counters
}

// Purger deletes expired short-lived records (sessions, codes, device codes,
// replay records, refresh tokens, old failure counters), which every reader
// already ignores, so that they do not accumulate.
type Purger interface {
	PurgeExpired(ctx context.Context, before time.Time) (int64, error)
}
