package household

import (
	"context"
	"errors"
	"strings"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
)

// Acting is the answer of ActFor.
type Acting struct {
	// Governed says a household's rules speak of the user and the thing;
	// when false, Decision is zero and no household has a say.
	Governed bool
	// Held says the thing is one of the deciding household's things and the
	// user one of its members: whoever owns it, the members may have it act
	// for them as the rules allow.
	Held     bool
	Decision policy.Decision
}

// ActFor answers whether thingID may act for userID, for the authorization
// server: when the user pairs it (policy.Pair) and whenever it gets tokens
// for the user. The household the thing is one of decides for its members.
// A thing of no household (or of one the user is not in) is decided, for
// pairing, by each household where the user is a dependant, as if the
// thing were its own (rules about every thing or its model speak of it): a
// child cannot escape the household's rules with a new device. Refusals are
// audited, as Decide's are.
func (s *Service) ActFor(ctx context.Context, userID, thingID string, action policy.Action) (Acting, error) {
	req := policy.Request{UserID: userID, ThingID: thingID, Action: action, Door: "oauth"}
	set, household, held, err := s.heldFor(ctx, userID, thingID)
	if err != nil {
		return Acting{}, err
	}
	if held {
		d, err := s.decideIn(ctx, set, household, req)
		return Acting{Governed: true, Held: true, Decision: d}, err
	}
	if action != policy.Pair {
		return Acting{}, nil
	}
	ms, err := s.st.ListMemberships(ctx, userID)
	if err != nil {
		return Acting{}, err
	}
	var out Acting
	var newcomer *policy.Thing
	for _, m := range ms {
		if policy.Role(m.Role) != policy.Dependant {
			continue
		}
		if newcomer == nil {
			th, err := s.ids.GetThing(ctx, thingID)
			if err != nil {
				return Acting{}, err
			}
			newcomer = &policy.Thing{ID: th.ID, Name: thingName(th), Model: th.Model}
		}
		set, err := s.compile(ctx, m.HouseholdID)
		if err != nil {
			return Acting{}, err
		}
		d, err := s.decideIn(ctx, set.Newcomer(*newcomer), m.HouseholdID, req)
		if err != nil || !d.Allowed {
			return Acting{Governed: true, Decision: d}, err
		}
		out = Acting{Governed: true, Decision: d}
	}
	return out, nil
}

// heldFor is the household thingID is one of, compiled, and whether it
// holds the thing for userID (they are a member of it).
func (s *Service) heldFor(ctx context.Context, userID, thingID string) (*policy.Set, string, bool, error) {
	set, household, err := s.setOfThing(ctx, thingID)
	if err != nil || household == "" || !set.Holds(thingID) {
		return set, household, false, err
	}
	role, err := s.roleIn(ctx, household, userID)
	return set, household, role != "", err
}

// decideIn decides req in the compiled household, auditing a refusal.
func (s *Service) decideIn(ctx context.Context, set *policy.Set, household string, req policy.Request) (policy.Decision, error) {
	d, err := s.engine.Decide(set, req)
	if err == nil && !d.Allowed {
		s.denied(ctx, store.Ref{Kind: store.KindThing, ID: req.ThingID}, req, d, household)
	}
	return d, err
}

// roleIn is userID's role in the household, "" when not a member.
func (s *Service) roleIn(ctx context.Context, household, userID string) (policy.Role, error) {
	members, err := s.st.ListHouseholdMembers(ctx, household)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	for _, m := range members {
		if m.UserID == userID {
			return policy.Role(m.Role), nil
		}
	}
	return "", err
}

// DecideShare decides the conditions of UMA share shareID (of resourceID)
// for its requesting party, on the engine's clock, and audits a refusal as
// every door's: a "policy.deny" record on the resource (kind
// "uma_resource"), door "uma", rule "share:<id>", the reason its owner
// reads ("outside the share's times: from 07:00 to 20:00 on school days
// (Europe/Berlin)").
func (s *Service) DecideShare(ctx context.Context, c *policy.Conditions, party, resourceID, shareID string, scopes []string) policy.Decision {
	d := s.engine.Within(c)
	d.Rule = "share:" + shareID
	if !d.Allowed {
		req := policy.Request{UserID: party, Action: policy.Use, Scope: strings.Join(scopes, " "), Door: "uma"}
		s.denied(ctx, store.Ref{Kind: "uma_resource", ID: resourceID}, req, d, "")
	}
	return d
}
