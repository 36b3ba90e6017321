package store

import (
	"context"
	"encoding/json"
	"time"
)

// Household is a family's home (issue 14): a group of a new kind, stored as
// a Group (ID is the group's, so SCIM shows it with its members) and this
// record. Rules are the guardians' rules as structured JSON that
// internal/policy reads; the store does not interpret them.
type Household struct {
	ID       string
	TimeZone string // an IANA zone name
	Rules    json.RawMessage
	Revision int64 // 1 on create, +1 on every update
	Created  time.Time
	Modified time.Time
}

// HouseholdMember is a user's place in a household.
type HouseholdMember struct {
	HouseholdID string
	UserID      string
	Role        string // "guardian", "dependant" or "guest"
	Created     time.Time
}

// Room is a room of a household; its Name is unique in the household,
// case-insensitively.
type Room struct {
	ID          string
	HouseholdID string
	Name        string
	Created     time.Time
}

// Placement puts a thing in a room. A thing is in at most one room of one
// household; OwnerID is the member who placed it, its owner then.
type Placement struct {
	ThingID     string
	HouseholdID string
	RoomID      string
	OwnerID     string
	Created     time.Time
}

// Invitation asks someone to join a household with a role; the invitee
// accepts (the membership is created then) or it expires. It names the
// invitee as the guardian did, by UserName or by Email (exactly one, stored
// lower-cased), not by account: the invitee is whoever holds that user name,
// or has verified that address, when answering. So no account is looked up
// when inviting, and an invitation tells nothing about which accounts exist.
type Invitation struct {
	ID          string
	HouseholdID string
	UserName    string
	Email       string
	Role        string
	InvitedBy   string
	Created     time.Time
	ExpiresAt   time.Time
}

// PlatformPolicies is the administrators' Cedar policy set for every
// household, as text (internal/policy parses and validates it).
type PlatformPolicies struct {
	Source     string
	Revision   int64 // 1 for the first set stored, +1 for each after
	Modified   time.Time
	ModifiedBy string
}

// InvitationFilter selects invitations; zero fields match anything.
// UserName and Email select a user's invitations: those naming the user
// name UserName or the address Email (compared case-insensitively; give
// only a verified address).
type InvitationFilter struct {
	HouseholdID string
	UserName    string
	Email       string
}

// Households stores households. Deleting the group deletes its household,
// and with it members, rooms, placements and invitations; deleting a user
// or a thing deletes its memberships and placements (an invitation names
// no account: it waits until it expires).
type Households interface {
	// CreateHousehold stores h for the existing group h.ID (ErrNotFound
	// without it, ErrConflict when it is a household already).
	CreateHousehold(ctx context.Context, h *Household) error
	GetHousehold(ctx context.Context, id string) (*Household, error)
	// UpdateHousehold loads the household, calls fn and stores its TimeZone
	// and Rules with Revision+1; ifRevision as in UpdateUser.
	UpdateHousehold(ctx context.Context, id string, ifRevision int64, fn func(*Household) error) (*Household, error)

	// PutHouseholdMember adds the member or changes its role (ErrNotFound
	// when the household or the user does not exist).
	PutHouseholdMember(ctx context.Context, m *HouseholdMember) error
	RemoveHouseholdMember(ctx context.Context, householdID, userID string) error
	ListHouseholdMembers(ctx context.Context, householdID string) ([]HouseholdMember, error)
	// ListMemberships returns the households userID is a member of.
	ListMemberships(ctx context.Context, userID string) ([]HouseholdMember, error)

	// CreateRoom stores r (ErrConflict when the household has a room of
	// that name already).
	CreateRoom(ctx context.Context, r *Room) error
	// DeleteRoom deletes the room of the household and the placements in it.
	DeleteRoom(ctx context.Context, householdID, roomID string) error
	ListRooms(ctx context.Context, householdID string) ([]Room, error)

	// PlaceThing puts the thing in the room, moving it from where it was
	// (ErrNotFound when the thing, or the room in that household, does not
	// exist).
	PlaceThing(ctx context.Context, p *Placement) error
	RemovePlacement(ctx context.Context, thingID string) error
	GetPlacement(ctx context.Context, thingID string) (*Placement, error)
	ListPlacements(ctx context.Context, householdID string) ([]Placement, error)

	// GetPlatformPolicies returns the platform's policy set, ErrNotFound
	// before one was stored.
	GetPlatformPolicies(ctx context.Context) (*PlatformPolicies, error)
	// PutPlatformPolicies stores p with the next revision, set in p;
	// ifRevision (0: whatever is stored) as in UpdateUser, ErrStale otherwise.
	PutPlatformPolicies(ctx context.Context, p *PlatformPolicies, ifRevision int64) error

	// CreateInvitation stores inv with its user name or address lower-cased
	// (ErrNotFound when the household does not exist).
	CreateInvitation(ctx context.Context, inv *Invitation) error
	GetInvitation(ctx context.Context, id string) (*Invitation, error)
	DeleteInvitation(ctx context.Context, id string) error
	ListInvitations(ctx context.Context, f InvitationFilter) ([]Invitation, error)
}
