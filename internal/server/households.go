package server

import (
	"context"
	"errors"

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

// householdGrants adapts the authorization server's grant revocation to
// household.Grants. The households are made before the authorization
// server (which asks them), so the server is found when a grant is
// revoked, once mountComponents made it.
type householdGrants struct{ p *Platform }

func (g householdGrants) RevokeGrant(ctx context.Context, actor, grantID, reason string) error {
	srv := g.p.oauthServer.Load()
	if srv == nil {
		return errors.New("server: no authorization server to revoke grants through")
	}
	return srv.RevokeGrant(ctx, actor, grantID, reason)
}

var _ household.Grants = householdGrants{}
