package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Kinds of identity a connection authenticates as.
const (
	kindThing     = "thing"
	kindService   = "service"
	kindUser      = "user"
	kindAnonymous = "anonymous"
)

// Identity is who a connection authenticated as: what its token or
// certificate said, and what the store said about it at CONNECT. It is kept
// with the session (also across restarts, see record.go) so that messages
// queued for an offline session are checked against the same grants.
type Identity struct {
	Kind             string    `json:"kind"`
	Thing            string    `json:"thing,omitempty"`
	Subject          string    `json:"sub,omitempty"`    // the token's sub
	Client           string    `json:"client,omitempty"` // the token's client_id
	ClientIdentifier string    `json:"cid"`              // the MQTT client identifier
	Grant            string    `json:"gid,omitempty"`
	Cert             string    `json:"cert,omitempty"` // lower-case hex SHA-256 of the client certificate's DER
	Scopes           []string  `json:"scope,omitempty"`
	Admin            bool      `json:"admin,omitempty"`
	Expires          time.Time `json:"exp,omitzero"` // token (or certificate) expiry; zero for anonymous clients
	AuthMethod       string    `json:"am,omitempty"` // MQTT 5 Authentication Method used at CONNECT
	// IDToken: the credential was an ID token (Options.IDTokenClients), so
	// Client is its audience and the grant must be that client's and user's.
	IDToken bool `json:"idt,omitempty"`

	// From the store.
	Model string   `json:"model,omitempty"`
	Owner string   `json:"owner,omitempty"`
	Owned []string `json:"owned,omitempty"`
}

// principal names the identity a session belongs to: a session (its
// subscriptions and queued messages) is only ever resumed by the same one.
func (id *Identity) principal() string {
	switch id.Kind {
	case kindThing:
		return "thing:" + id.Thing
	case kindUser:
		return "user:" + id.Subject
	case kindService:
		return "client:" + id.Client
	}
	return kindAnonymous
}

// user is the user the connection acts for, if any: an app's user, or the
// owner a paired device acts for.
func (id *Identity) user() string {
	if id.Kind == kindUser || (id.Kind == kindThing && id.Subject != "" && id.Subject != id.Client) {
		return id.Subject
	}
	return ""
}

// is reports whether a rule for who applies.
func (id *Identity) is(who string) bool {
	switch who {
	case WhoThing:
		return id.Kind == kindThing
	case WhoService:
		return id.Kind == kindService
	case WhoUser:
		return id.Kind == kindUser
	case WhoAdmin:
		return id.Admin
	case WhoAnonymous:
		return id.Kind == kindAnonymous
	}
	return false
}

// Directory is what the broker reads of identities (store.Store).
type Directory interface {
	// Standing reads the grant, the thing and the user a credential names
	// in one statement, on every CONNECT: nothing of them is remembered.
	Standing(ctx context.Context, k store.StandingKeys) (store.Standing, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error)
}

// errInactive: the thing or user is disabled or gone, or the grant revoked.
var errInactive = errors.New("identity is not active")

// errForeignGrant: an ID token names a grant of another client or user.
var errForeignGrant = errors.New("the token's grant belongs to another client or user")

// resolver reads identities for the broker.
type resolver struct {
	dir Directory
	// isAdmin, when set, confirms a user's admin scope.
	isAdmin func(context.Context, string) (bool, error)
	// ownerInRules: some rule names ${owner.id}, so every thing's owner is read.
	ownerInRules bool
	// households: a thing may act for a user other than its owner, as the
	// policies of the household it is placed in allow (Options.Policies).
	households bool
}

func newResolver(dir Directory, isAdmin func(context.Context, string) (bool, error), rules []Rule, households bool) *resolver {
	r := &resolver{dir: dir, isAdmin: isAdmin, households: households}
	for _, rule := range rules {
		for _, fs := range rule.filters() {
			for _, f := range fs {
				r.ownerInRules = r.ownerInRules || strings.Contains(f, "${owner.id}")
			}
		}
	}
	return r
}

// resolve reads what the rules need of id from the store and checks that
// everything it stands on is still there: the grant not revoked, the thing
// and the user active.
func (rs *resolver) resolve(ctx context.Context, id *Identity) error {
	dir, isAdmin := rs.dir, rs.isAdmin
	// The verifier's deny set only knows revocations it saw since start;
	// the stored grant is the truth. The grant, the thing and the user are
	// read in one statement.
	st, err := dir.Standing(ctx, store.StandingKeys{Grant: id.Grant, Thing: id.Thing, User: id.user()})
	if err != nil {
		return err
	}
	if g := st.Grant; id.Grant != "" {
		if !g.Found || !g.RevokedAt.IsZero() {
			return fmt.Errorf("%w: grant revoked", errInactive)
		}
		// An access token says its client and subject itself; an ID token
		// only names the grant, which must be of the user and the client
		// it was issued to.
		if id.IDToken && (g.ClientID != id.Client || g.UserID != id.Subject) {
			return errForeignGrant
		}
	}
	if id.Thing != "" {
		if !st.Thing.Found || st.Thing.Status != store.StatusActive {
			return fmt.Errorf("%w: thing %s is disabled or deleted", errInactive, id.Thing)
		}
		id.Model = st.Thing.Model
		id.Owner = ""
		if rs.needOwner(id) {
			if err := rs.owner(ctx, id); err != nil {
				return err
			}
		}
	}
	if u := id.user(); u != "" && (!st.User.Found || st.User.Status != store.StatusActive) {
		return fmt.Errorf("%w: user %s is disabled or deleted", errInactive, u)
	}
	if id.Kind == kindUser {
		from := store.Ref{Kind: store.KindUser, ID: id.Subject}
		rels, err := dir.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, From: &from})
		if err != nil {
			return err
		}
		id.Owned = id.Owned[:0]
		for _, r := range rels {
			if r.To.Kind == store.KindThing {
				id.Owned = append(id.Owned, r.To.ID)
			}
		}
		slices.Sort(id.Owned)
	}
	id.Admin = slices.Contains(id.Scopes, scopeAdmin)
	if u := id.user(); id.Admin && u != "" {
		// A user's consent cannot make the user an administrator.
		ok := false
		if isAdmin != nil {
			var err error
			if ok, err = isAdmin(ctx, u); err != nil {
				return err
			}
		}
		id.Admin = ok
	}
	return nil
}

// scopeAdmin is the scope of administrators (authn.ScopeAdmin).
const scopeAdmin = "admin"

// needOwner: the owner is read for a device acting for a user (which it must
// still belong to) and when a rule or scope names ${owner.id}.
func (rs *resolver) needOwner(id *Identity) bool {
	if rs.ownerInRules || id.user() != "" {
		return true
	}
	for _, s := range id.Scopes {
		if strings.Contains(s, "${owner.id}") {
			return true
		}
	}
	return false
}

// owner reads the owner of id's thing.
func (rs *resolver) owner(ctx context.Context, id *Identity) error {
	to := store.Ref{Kind: store.KindThing, ID: id.Thing}
	rels, err := rs.dir.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &to})
	if err != nil {
		return err
	}
	for _, r := range rels {
		if r.From.Kind == store.KindUser {
			id.Owner = r.From.ID
			break
		}
	}
	if u := id.user(); u != "" && u != id.Owner && !rs.households {
		// A device paired to a user acts for that user only while the
		// user owns it; unlinking revokes its grants too. With households,
		// the policies decide (only a member of the household the thing is
		// placed in gets anywhere: allows).
		return fmt.Errorf("%w: thing %s is no longer linked to user %s", errInactive, id.Thing, u)
	}
	return nil
}
