package server

import (
	"context"

	"github.com/thingid/thingid/internal/household"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/policy"
)

// oauthHouseholds adapts the households to oauth.Households (oauth does
// not import household): pairing asks policy.Pair, tokens policy.Use.
type oauthHouseholds struct{ hh *household.Service }

func (o oauthHouseholds) ActFor(ctx context.Context, userID, thingID string, pairing bool) (oauth.HouseholdVerdict, error) {
	action := policy.Use
	if pairing {
		action = policy.Pair
	}
	a, err := o.hh.ActFor(ctx, userID, thingID, action)
	return oauth.HouseholdVerdict{Governed: a.Governed, Held: a.Held, Allowed: a.Decision.Allowed, Reason: a.Decision.Reason}, err
}

var _ oauth.Households = oauthHouseholds{}
