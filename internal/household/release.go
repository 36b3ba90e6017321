package household

import (
	"context"
	"errors"

	"github.com/thingid/thingid/internal/store"
)

// A member's thing acts for another member (its tokens for them, their
// grant) because the household holds it for them. When that ends (the
// thing taken out of the household, its room deleted, moved to another
// household, its owner or that member leaving), the grants resting on it
// are revoked at once through the authorization server's revocation path,
// whose grant.revoke event makes every verifier refuse the tokens already
// issued: the household does not wait for the next refresh to refuse them.

// Grants revokes a grant through the authorization server's one revocation
// path: audited, grant.revoke published (*oauth.Server, adapted in
// server).
type Grants interface {
	RevokeGrant(ctx context.Context, actor, grantID, reason string) error
}

// releasing are the changes after which a thing may no longer be held for a
// member.
var releasing = map[string]bool{
	"household.leave": true, "household.room.delete": true, "household.thing.remove": true, "household.thing.place": true,
}

// lent is what a household held before a change: which things, for which
// members.
type lent struct {
	things  map[string]bool
	members map[string]map[string]bool // thing → the members it was held for
}

// lentBy reads what household id holds, and, for a thing about to be placed
// there (thing), what the household it leaves held of it.
func (s *Service) lentBy(ctx context.Context, id, thing string) (*lent, error) {
	l := &lent{things: map[string]bool{}, members: map[string]map[string]bool{}}
	add := func(household string, only string) error {
		members, err := s.st.ListHouseholdMembers(ctx, household)
		if err != nil {
			return err
		}
		placements, err := s.st.ListPlacements(ctx, household)
		if err != nil {
			return err
		}
		for _, p := range placements {
			if only != "" && p.ThingID != only {
				continue
			}
			l.things[p.ThingID] = true
			if l.members[p.ThingID] == nil {
				l.members[p.ThingID] = map[string]bool{}
			}
			for _, m := range members {
				l.members[p.ThingID][m.UserID] = true
			}
		}
		return nil
	}
	if err := add(id, ""); err != nil {
		return nil, err
	}
	if thing != "" {
		p, err := s.st.GetPlacement(ctx, thing)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, err
		case p.HouseholdID != id:
			if err := add(p.HouseholdID, thing); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// release revokes the grants of a thing of before acting for a member it
// was held for, when its user does not own it and no household holds it
// for them any more. Failures are logged: the change stands, and the next
// token request of such a grant is refused anyway (oauth's check).
func (s *Service) release(ctx context.Context, actor string, before *lent) {
	if s.grants == nil {
		return
	}
	for thing := range before.things {
		gs, err := s.st.ListGrants(ctx, store.GrantFilter{ThingID: thing})
		if err != nil {
			s.log.Error("household: listing grants to release", "thing", thing, "err", err)
			continue
		}
		for _, g := range gs {
			if g.UserID == "" || !before.members[thing][g.UserID] {
				continue
			}
			held, err := s.holds(ctx, g.UserID, thing)
			if err == nil && !held {
				err = s.grants.RevokeGrant(ctx, actor, g.ID, "the household no longer holds the device for this user")
			}
			if err != nil {
				s.log.Error("household: releasing a grant", "grant", g.ID, "thing", thing, "user", g.UserID, "err", err)
			}
		}
	}
}

// holds reports whether thingID may act for userID now: they own it, or a
// household they are a member of holds it.
func (s *Service) holds(ctx context.Context, userID, thingID string) (bool, error) {
	if owned, err := s.owns(ctx, userID, thingID); err != nil || owned {
		return owned, err
	}
	_, _, held, err := s.heldFor(ctx, userID, thingID)
	return held, err
}
