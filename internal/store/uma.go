package store

import (
	"context"
	"encoding/json"
	"time"
)

// UMAResource is a resource registered by a resource server through the UMA
// protection API (UMA 2.0 Federated Authorization §3). It belongs to exactly
// one owner (a user) and to the resource server (client) that registered it.
type UMAResource struct {
	ID          string
	OwnerID     string // the user who owns it
	ClientID    string // the resource server that registered it
	Name        string
	Type        string
	IconURI     string
	Description string
	Scopes      []string
	Created     time.Time
	Modified    time.Time
}

// UMAResourceFilter selects resources; zero fields match anything.
type UMAResourceFilter struct {
	OwnerID  string
	ClientID string
}

// UMAPermission is one requested or granted permission: a resource and some
// of its scopes.
type UMAPermission struct {
	ResourceID string   `json:"resource_id"`
	Scopes     []string `json:"resource_scopes"`
}

// UMATicket is a permission ticket, stored under the keyed hash of its value:
// single use, short-lived, bound to the resource server that asked for it.
type UMATicket struct {
	Hash     []byte
	ClientID string // the resource server
	// Requester is the client a ticket reissued by the token endpoint
	// (need_info, request_submitted) or by the claims-interaction endpoint
	// is bound to; "" for a fresh ticket.
	Requester string
	// Party is the requesting party (a user id) the claims-interaction
	// endpoint bound to the ticket; "" when none was.
	Party       string
	Permissions []UMAPermission
	Created     time.Time
	ExpiresAt   time.Time
	UsedAt      time.Time
}

// UMAShare is an owner's decision: the grantee (a user or a group) may use
// the resource with Scopes until ExpiresAt (zero: until revoked), at the
// times Conditions say (structured JSON that internal/uma reads; nil: at
// all times).
type UMAShare struct {
	ID         string
	ResourceID string
	OwnerID    string
	Grantee    Ref // KindUser or KindGroup
	Scopes     []string
	ExpiresAt  time.Time
	Conditions json.RawMessage
	Created    time.Time
}

// UMAShareFilter selects shares; zero fields match anything.
type UMAShareFilter struct {
	OwnerID    string
	ResourceID string
	Grantee    *Ref
}

// UMARequestStatus is where an access request stands.
type UMARequestStatus string

const (
	UMAPending  UMARequestStatus = "pending"
	UMAApproved UMARequestStatus = "approved"
	UMADenied   UMARequestStatus = "denied"
)

// UMARequest is a requesting party's request for access the owner has not
// decided yet (UMA 2.0 Grant §3.3.6 request_submitted).
type UMARequest struct {
	ID          string
	ResourceID  string
	OwnerID     string
	RequesterID string // the requesting party (a user)
	ClientID    string // the client that asked on their behalf
	Scopes      []string
	Status      UMARequestStatus
	Created     time.Time
	Decided     time.Time
}

// UMARequestFilter selects requests; zero fields match anything.
type UMARequestFilter struct {
	OwnerID     string
	RequesterID string
	ResourceID  string
	Status      UMARequestStatus
}

// UMAPCT is a persisted claims token (UMA 2.0 Grant §3.3.5): what the
// requesting party proved once, stored under the keyed hash of its value.
type UMAPCT struct {
	Hash      []byte
	ClientID  string
	UserID    string
	Created   time.Time
	ExpiresAt time.Time
}

// UMA stores what UMA 2.0 needs. Deleting a resource deletes its shares and
// requests. Deleting a share keeps its grant links: the caller lists them
// (ListUMAShareGrants) after the delete committed and revokes those grants,
// so that an RPT issued concurrently is either linked before that list or
// sees the share gone when its issuer checks again after its own commit.
type UMA interface {
	CreateUMAResource(ctx context.Context, r *UMAResource) error
	GetUMAResource(ctx context.Context, id string) (*UMAResource, error)
	// UpdateUMAResource replaces name, type, icon, description and scopes.
	UpdateUMAResource(ctx context.Context, r *UMAResource) error
	DeleteUMAResource(ctx context.Context, id string) error
	ListUMAResources(ctx context.Context, f UMAResourceFilter) ([]*UMAResource, error)

	CreateUMATicket(ctx context.Context, t *UMATicket) error
	// GetUMATicket returns the ticket, used (UsedAt set) or not, without
	// using it; an unknown one is ErrNotFound.
	GetUMATicket(ctx context.Context, hash []byte) (*UMATicket, error)
	// UseUMATicket marks the ticket used and returns it, expired or not (the
	// caller answers expired_ticket); a second use returns it with ErrUsed,
	// an unknown one is ErrNotFound. Of concurrent callers exactly one succeeds.
	UseUMATicket(ctx context.Context, hash []byte, at time.Time) (*UMATicket, error)

	CreateUMAShare(ctx context.Context, s *UMAShare) error
	GetUMAShare(ctx context.Context, id string) (*UMAShare, error)
	ListUMAShares(ctx context.Context, f UMAShareFilter) ([]*UMAShare, error)
	DeleteUMAShare(ctx context.Context, id string) error
	// SetUMAShareConditions replaces the share's conditions (nil: none); an
	// unknown share is ErrNotFound. As after a delete, the caller revokes
	// the grants resting on the share once this committed.
	SetUMAShareConditions(ctx context.Context, id string, conditions json.RawMessage) error

	CreateUMARequest(ctx context.Context, r *UMARequest) error
	GetUMARequest(ctx context.Context, id string) (*UMARequest, error)
	// DecideUMARequest moves a pending request to status at `at`; a request
	// decided already is ErrConflict.
	DecideUMARequest(ctx context.Context, id string, status UMARequestStatus, at time.Time) error
	ListUMARequests(ctx context.Context, f UMARequestFilter) ([]*UMARequest, error)

	CreateUMAPCT(ctx context.Context, p *UMAPCT) error
	// GetUMAPCT returns a live PCT; unknown or expired (at `at`) is ErrNotFound.
	GetUMAPCT(ctx context.Context, hash []byte, at time.Time) (*UMAPCT, error)

	// LinkUMAGrant records that the RPTs of grant grantID rest on share
	// shareID (linking again is no error).
	LinkUMAGrant(ctx context.Context, grantID, shareID string) error
	// ListUMAShareGrants returns the grants resting on the share.
	ListUMAShareGrants(ctx context.Context, shareID string) ([]string, error)
}
