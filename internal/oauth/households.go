package oauth

import (
	"context"
	"slices"

	"github.com/thingid/thingid/internal/store"
)

// Households decides, by the rules of households, whether a thing may act
// for a user (*household.Service, adapted in internal/server so that oauth
// does not import household). The server asks when a user pairs a thing at
// /device (pairing) and whenever a thing acting for a user gets tokens:
// the device code's exchange (pairing), refresh, authorization code and
// jwt-bearer (use).
type Households interface {
	ActFor(ctx context.Context, userID, thingID string, pairing bool) (HouseholdVerdict, error)
}

// HouseholdVerdict is the households' answer.
type HouseholdVerdict struct {
	// Governed says a household's rules speak of the user and the thing;
	// when false no household has a say.
	Governed bool
	// Held says the thing is one of the deciding household's things and
	// the user one of its members: the thing may act for them, as the rules
	// allow, although another member owns it.
	Held    bool
	Allowed bool
	// Reason says what decided, in the words a guardian reads.
	Reason string
}

// actFor asks the households about thingID acting for userID; without
// Households (a command-line server) no household has a say.
func (s *Server) actFor(ctx context.Context, userID, thingID string, pairing bool) (HouseholdVerdict, error) {
	if s.opts.Households == nil || userID == "" || thingID == "" {
		return HouseholdVerdict{}, nil
	}
	return s.opts.Households.ActFor(ctx, userID, thingID, pairing)
}

// householdsAllow checks, before tokens of grant g are issued, a thing
// acting for a user: a household's refusal is access_denied naming its
// reason (the grant stays: the device may ask again when the rules allow);
// a thing another user owns acts for g's user only while a household holds
// it for them (invalid_grant once it no longer does).
func (s *Server) householdsAllow(ctx context.Context, g *store.Grant, pairing bool) error {
	if g.UserID == "" || g.ThingID == "" {
		return nil
	}
	v, err := s.actFor(ctx, g.UserID, g.ThingID, pairing)
	switch {
	case err != nil:
		return serverError(err)
	case v.Governed && !v.Allowed:
		return ErrAccessDenied.WithDescription("the household's rules refuse it: %s", v.Reason)
	case v.Held:
		return nil
	}
	owners, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: g.ThingID}})
	if err != nil {
		return serverError(err)
	}
	if len(owners) > 0 && !slices.ContainsFunc(owners, func(o store.Relationship) bool { return o.From.ID == g.UserID }) {
		return ErrInvalidGrant.WithDescription("the device belongs to another user and no household of yours holds it any more; ask its owner")
	}
	return nil
}
