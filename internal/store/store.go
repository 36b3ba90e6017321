// Package store owns the persistent model of thingid: users, things, groups, the
// relationships between them, admin API tokens, password resets and the
// append-only audit log.
// It validates nothing about identities (that is internal/identity's job) and never
// publishes events; backends live in sub-packages and must pass storetest.
package store

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/refusal"
)

// Sentinel errors every backend returns (wrapped with detail) so callers can use errors.Is.
var (
	// ErrNotFound: the addressed record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique constraint would be violated (userName, serial number,
	// MAC address, group name, an existing relationship).
	ErrConflict = errors.New("conflict")
	// ErrEmailTaken: another user holds the e-mail address verified. It is an
	// ErrConflict too (errors.Is).
	ErrEmailTaken = fmt.Errorf("e-mail address verified by another user: %w", ErrConflict)
	// ErrStale: the caller's expected revision is not the stored one (optimistic concurrency).
	ErrStale = errors.New("revision mismatch")
	// ErrInvalidQuery: a filter or sort names an unknown field or compares it with
	// a value of the wrong kind.
	ErrInvalidQuery = errors.New("invalid query")
)

// QueryError is an ErrInvalidQuery naming the field of the filter or sort
// and why (a refusal a page translates, ui.Refusal).
type QueryError struct{ refusal.FieldError }

// InvalidQuery is the ErrInvalidQuery of field, for the reason format.
func InvalidQuery(field, format string, args ...any) *QueryError {
	return &QueryError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("field %q: %s: %v", e.Field, e.Reason(), ErrInvalidQuery)
}

func (e *QueryError) Unwrap() error { return ErrInvalidQuery }

// ConflictError is an ErrConflict on a value people choose (a user name,
// a serial number, a MAC address, a group's name): its refusal says that
// the field's value is taken, for a page to say in its reader's language
// (ui.Refusal). Error() is the backend's English, unchanged.
type ConflictError struct {
	refusal.FieldError
	err error // wraps ErrConflict
}

// Conflict is err (which wraps ErrConflict) about field's value.
func Conflict(field, value string, err error) *ConflictError {
	return &ConflictError{refusal.FieldError{Field: field, Src: "%q is taken already", Args: []any{value}}, err}
}

func (e *ConflictError) Error() string { return e.err.Error() }

func (e *ConflictError) Unwrap() error { return e.err }

// Status of a user or thing.
type Status string

const (
	StatusActive   Status = "active"
	StatusDisabled Status = "disabled"
)

// ThingType says what kind of thing an identity is.
type ThingType string

const (
	ThingDevice  ThingType = "device"
	ThingService ThingType = "service"
	ThingGateway ThingType = "gateway"
)

// Kind names the type of an identity in references and the audit log.
type Kind string

const (
	KindUser  Kind = "user"
	KindThing Kind = "thing"
	KindGroup Kind = "group"
)

// Ref points at one identity.
type Ref struct {
	Kind Kind   `json:"kind"`
	ID   string `json:"id"`
}

// Meta is common to every stored identity. Backends set all of it: ID (a UUID) on
// create when empty, Revision 1 on create and +1 on every update, the times in UTC.
type Meta struct {
	ID       string
	Revision int64
	Created  time.Time
	Modified time.Time
}

// MultiValue is one entry of a multi-valued attribute (emails, phone numbers).
type MultiValue struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Display string `json:"display,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// Name is a person's name in its parts.
type Name struct {
	Formatted       string `json:"formatted,omitempty"`
	FamilyName      string `json:"familyName,omitempty"`
	GivenName       string `json:"givenName,omitempty"`
	MiddleName      string `json:"middleName,omitempty"`
	HonorificPrefix string `json:"honorificPrefix,omitempty"`
	HonorificSuffix string `json:"honorificSuffix,omitempty"`
}

// User is a person. UserName is unique case-insensitively.
type User struct {
	Meta
	UserName      string
	ExternalID    string
	DisplayName   string
	Name          Name
	Emails        []MultiValue
	PhoneNumbers  []MultiValue
	Locale        string
	Timezone      string
	Status        Status
	EmailVerified bool
	// PasswordHash is an argon2id PHC string, empty when the user has no password.
	PasswordHash string
	// MustChangePassword confines the user's sessions to changing the password
	// (a one-time password handed out by an administrator or the bootstrap).
	MustChangePassword bool
}

// PrimaryEmail is the address EmailVerified is about: the e-mail marked
// primary, else the first one, else "".
func (u *User) PrimaryEmail() string {
	for _, e := range u.Emails {
		if e.Primary {
			return e.Value
		}
	}
	if len(u.Emails) > 0 {
		return u.Emails[0].Value
	}
	return ""
}

// VerifiedEmail is the address the user has proven to hold, lower-cased: the
// primary address when EmailVerified, else "". At most one user holds a given
// VerifiedEmail (backends enforce it with ErrEmailTaken); any number may hold
// the same address unverified, which identifies none of them.
func (u *User) VerifiedEmail() string {
	if !u.EmailVerified {
		return ""
	}
	return strings.ToLower(u.PrimaryEmail())
}

// CertRef records a certificate issued to or registered for a thing.
type CertRef struct {
	// FingerprintSHA256 is the lower-case hex SHA-256 of the DER certificate.
	FingerprintSHA256 string `json:"fingerprintSha256"`
	Subject           string `json:"subject,omitempty"`
	Issuer            string `json:"issuer,omitempty"`
	// SerialNumber is the certificate's serial number in lower-case hex, so
	// that revoking every certificate of a thing can list them in a CRL.
	SerialNumber string    `json:"serialNumber,omitempty"`
	NotAfter     time.Time `json:"notAfter,omitzero"`
	// CA is the ID of the manufacturer CA the certificate chained to when
	// the platform accepted it (through an intermediate, perhaps); "" for
	// the platform's own certificates and those recorded otherwise.
	CA string `json:"ca,omitempty"`
}

// CertRefOf records cert.
func CertRefOf(cert *x509.Certificate) CertRef {
	sum := sha256.Sum256(cert.Raw)
	return CertRef{FingerprintSHA256: hex.EncodeToString(sum[:]), Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
		SerialNumber: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter.UTC()}
}

// Thing is a device, service or gateway. (Manufacturer, Model, SerialNumber) is
// unique when SerialNumber is set; every MAC address is unique across all things.
type Thing struct {
	Meta
	ExternalID      string
	DisplayName     string
	Type            ThingType
	Manufacturer    string
	Model           string
	SerialNumber    string
	FirmwareVersion string
	Location        string
	// MACAddresses are normalized: lower-case, colon-separated (aa:bb:cc:dd:ee:ff).
	MACAddresses []string
	Status       Status
	// JWKS is the thing's public key set (RFC 7517 JSON), nil when none.
	JWKS         json.RawMessage
	Certificates []CertRef
	// Attributes are free-form; values are JSON values (string, number, bool, ...).
	Attributes map[string]any
}

// Group collects users, things and other groups. DisplayName is unique
// case-insensitively. Members are stored as member relationships in the same
// transaction as the group; order is not significant.
type Group struct {
	Meta
	ExternalID  string
	DisplayName string
	Members     []Ref
}

// RelKind is the kind of a relationship between two identities.
type RelKind string

const (
	// RelOwner: From (a user) owns To (a thing).
	RelOwner RelKind = "owner"
	// RelMember: From (user, thing or group) is a member of To (a group).
	RelMember RelKind = "member"
	// RelGuardian: From (a user) is a guardian of To (a user).
	RelGuardian RelKind = "guardian"
)

// Relationship is a directed edge between two identities.
type Relationship struct {
	Kind    RelKind
	From    Ref
	To      Ref
	Created time.Time
}

// RelEnd names one end of a relationship.
type RelEnd string

const (
	EndFrom RelEnd = "from"
	EndTo   RelEnd = "to"
)

// RelFilter selects relationships; zero fields match anything.
type RelFilter struct {
	Kind RelKind
	From *Ref
	To   *Ref
}

// AuditRecord is one entry of the append-only audit log.
type AuditRecord struct {
	Seq    int64 // assigned by the store, increasing
	Time   time.Time
	Actor  string // "user:<id>", "admin-token:<id>", "system", "cli"
	Action string // "user.create", "thing.update", "relationship.add", ...
	Target Ref
	Detail json.RawMessage // optional JSON object
}

// TextMatch selects by a text column: the value Value, or with Prefix every
// value that starts with Value. The zero TextMatch selects everything.
type TextMatch struct {
	Value  string
	Prefix bool
}

// AuditQuery selects audit records in Seq order, the order they were
// appended in (Descending: newest first). Every condition set must hold.
type AuditQuery struct {
	Target *Ref // records about this identity; an empty Kind matches any kind
	Actor  TextMatch
	Action TextMatch
	Since  time.Time // records at or after Since; zero: no bound
	Until  time.Time // records before Until; zero: no bound
	// AfterSeq and BeforeSeq bound Seq exclusively (0: no bound): the
	// keyset positions of paging, which records appended meanwhile never
	// shift.
	AfterSeq   int64
	BeforeSeq  int64
	Descending bool
	Limit      int // 0: 100
}

// APIToken is an administrator API token; only a keyed hash of the secret is stored.
type APIToken struct {
	ID        string
	Name      string
	Hash      []byte // HMAC-SHA256 of the token secret, unique
	UserID    string // the administrator the token acts for
	Created   time.Time
	ExpiresAt time.Time // zero: does not expire
}

// Query selects identities for List calls. Field names are the logical names listed
// by each backend's field catalog (see Fields).
type Query struct {
	Filter     Expr // nil: everything
	SortBy     string
	Descending bool
	Offset     int // rows to skip
	Limit      int // 0: no rows (only the total); negative: no limit
	// NoTotal: the matches are not counted and List returns -1 for the
	// total; the page is then one statement (the directory, which pages by
	// keys and never says a total, reads a page of a million things without
	// counting them each time).
	NoTotal bool
	// CountLimit > 0 bounds the counting: when more than CountLimit match,
	// the total returned is CountLimit+1 ("more than CountLimit"), so that
	// a search matching most of a million rows need not count them all.
	CountLimit int
}

// Users stores people.
type Users interface {
	CreateUser(ctx context.Context, u *User) error
	GetUser(ctx context.Context, id string) (*User, error)
	// GetUserByName looks the name up case-insensitively.
	GetUserByName(ctx context.Context, userName string) (*User, error)
	// GetUserByVerifiedEmail returns the one user holding the address
	// verified (User.VerifiedEmail, case-insensitively); an address others
	// hold only unverified is ErrNotFound. It is the only lookup by e-mail:
	// an unverified address never identifies anybody.
	GetUserByVerifiedEmail(ctx context.Context, email string) (*User, error)
	// UpdateUser loads the user, calls fn and stores the result with Revision+1.
	// ifRevision 0 means "whatever is current" (the store re-runs fn on a concurrent
	// change); otherwise a different stored revision yields ErrStale.
	UpdateUser(ctx context.Context, id string, ifRevision int64, fn func(*User) error) (*User, error)
	DeleteUser(ctx context.Context, id string, ifRevision int64) error
	// ListUsers returns one page and the total number of matches.
	ListUsers(ctx context.Context, q Query) ([]*User, int, error)
	// UserNames maps each of ids that names a user to its userName, in one
	// read for the whole set (ids of no user are left out).
	UserNames(ctx context.Context, ids []string) (map[string]string, error)
}

// Things stores devices, services and gateways.
type Things interface {
	CreateThing(ctx context.Context, t *Thing) error
	// CreateThings inserts many things in one transaction; errs[i] is nil or the
	// reason things[i] was not stored (ErrConflict). Other rows are unaffected.
	CreateThings(ctx context.Context, things []*Thing) (errs []error, err error)
	GetThing(ctx context.Context, id string) (*Thing, error)
	UpdateThing(ctx context.Context, id string, ifRevision int64, fn func(*Thing) error) (*Thing, error)
	DeleteThing(ctx context.Context, id string, ifRevision int64) error
	ListThings(ctx context.Context, q Query) ([]*Thing, int, error)
	// ListThingsWith returns the page of ListThings, uncounted (as with
	// Query.NoTotal), and in the same statement what specs select of each
	// thing on it, as Related finds them: thing by thing in the page's
	// order, then spec by spec, each spec's in ListRelationships's order.
	// A page of directory entries is then one read.
	ListThingsWith(ctx context.Context, q Query, specs []RelSpec) ([]*Thing, []Related, error)
}

// Groups stores groups and their members.
type Groups interface {
	CreateGroup(ctx context.Context, g *Group) error
	GetGroup(ctx context.Context, id string) (*Group, error)
	UpdateGroup(ctx context.Context, id string, ifRevision int64, fn func(*Group) error) (*Group, error)
	DeleteGroup(ctx context.Context, id string, ifRevision int64) error
	ListGroups(ctx context.Context, q Query) ([]*Group, int, error)
	// GroupNames maps each of ids that names a group to its displayName,
	// in one read for the whole set (ids of no group are left out).
	GroupNames(ctx context.Context, ids []string) (map[string]string, error)
}

// Relationships stores edges between identities. Deleting an identity deletes its edges.
type Relationships interface {
	// AddRelationship fails with ErrNotFound if an end does not exist and
	// ErrConflict if the edge exists already.
	AddRelationship(ctx context.Context, r Relationship) error
	// RemoveRelationship fails with ErrNotFound if the edge does not exist.
	RemoveRelationship(ctx context.Context, r Relationship) error
	ListRelationships(ctx context.Context, f RelFilter) ([]Relationship, error)
	// Related lists, for a whole set of identities of kind self in one
	// statement, the relationships each spec selects, with the name of the
	// identity at their other end: what a page of directory entries refers
	// to. The results of each spec come in the order ListRelationships
	// lists them, spec after spec.
	Related(ctx context.Context, self Kind, ids []string, specs []RelSpec) ([]Related, error)
}

// RelSpec selects relationships of a set of identities: those of Kind
// whose End is one of them.
type RelSpec struct {
	Kind RelKind
	End  RelEnd
}

// Related is one relationship found by Relationships.Related: Spec is the
// index of the spec that selected it, Self the id at the spec's end, Other
// the identity at the other end and Name its name (a user's userName, a
// group's displayName, a thing's id).
type Related struct {
	Spec  int
	Self  string
	Other Ref
	Name  string
}

// Audit is the append-only audit log: there is no way to change or delete a record.
type Audit interface {
	AppendAudit(ctx context.Context, recs ...AuditRecord) error
	ListAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
}

// APITokens stores administrator API tokens.
type APITokens interface {
	CreateAPIToken(ctx context.Context, t *APIToken) error
	GetAPITokenByHash(ctx context.Context, hash []byte) (*APIToken, error)
	// ListAPITokens lists the tokens of one user, or of everybody when
	// userID is "", oldest first.
	ListAPITokens(ctx context.Context, userID string) ([]*APIToken, error)
	DeleteAPIToken(ctx context.Context, id string) error
}

// Tx is everything a caller can do inside one transaction.
type Tx interface {
	Users
	Things
	Groups
	Relationships
	Audit
	APITokens
	OAuth
	PKI
	UMA
	Households
	PasswordResets
	FactoryBatches
	ThingPSKs
	RevokedCWTs
}

// Store is a backend. Calls made on the Store directly run in their own transaction.
type Store interface {
	Tx
	// WithTx runs fn in one transaction, committed when fn returns nil and rolled
	// back otherwise. fn may be re-run by the backend on serialization failure.
	WithTx(ctx context.Context, fn func(tx Tx) error) error
	Purger
	// Ping reports whether the database answers (readiness).
	Ping(ctx context.Context) error
	Close() error
}

// EventRecord is one event in SQLite's table of recent events, which carries
// events between the processes sharing the database file (events.StartLogRelay):
// its sequence number and the relay's payload.
type EventRecord struct {
	Seq     int64
	Payload []byte
}
