package uma

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
)

// Conditions are the times a share holds, as its owner writes them (the
// JSON API's "conditions", the share form's "When" inputs) and as the store
// keeps them: the days of the week, daily window (across midnight when end
// is before start) and dates of a household rule (policy.When: "days",
// "start", "end", "firstDate", "lastDate"), in Zone, an IANA time zone
// (default: the zone of the owner's household, else UTC). The households'
// engine decides them on the server's clock (Options.Decider); no time a
// client sends takes part.
type Conditions struct {
	Zone      string   `json:"zone,omitempty"`
	Days      []string `json:"days,omitempty"`
	Start     string   `json:"start,omitempty"`
	End       string   `json:"end,omitempty"`
	FirstDate string   `json:"firstDate,omitempty"`
	LastDate  string   `json:"lastDate,omitempty"`
}

// when is c without its zone, as the engine takes it.
func (c *Conditions) when() policy.When {
	return policy.When{Days: c.Days, Start: c.Start, End: c.End, FirstDate: c.FirstDate, LastDate: c.LastDate}
}

// Decider decides a share's conditions on the households' clock, and audits
// a refusal where every door's refusals are audited (*household.Service).
type Decider interface {
	DecideShare(ctx context.Context, c *policy.Conditions, party, resourceID, shareID string, scopes []string) policy.Decision
}

// checkConditions checks c, the conditions of a share of owner, with the
// zone filled in, and returns what the store keeps: nil when c limits
// nothing. Errors name the field ("conditions.zone", "conditions.start").
func (s *Server) checkConditions(ctx context.Context, owner string, c *Conditions) (json.RawMessage, error) {
	if c == nil {
		return nil, nil
	}
	out := *c
	if out.Zone == "" {
		var err error
		if out.Zone, err = s.defaultZone(ctx, owner); err != nil {
			return nil, err
		}
	}
	return out.check()
}

// check is checkConditions once c names its zone.
func (c Conditions) check() (json.RawMessage, error) {
	loc, err := policy.LoadZone(c.Zone)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "conditions.zone", err.Error())
	}
	if _, err := policy.CompileConditions(c.when(), loc, "conditions"); err != nil {
		var fe *policy.FieldError
		if errors.As(err, &fe) {
			return nil, refuse(http.StatusBadRequest, fe.Field, fe.Reason())
		}
		return nil, err
	}
	if c.when().IsZero() {
		return nil, nil
	}
	return json.Marshal(c)
}

// defaultZone is the zone of owner's household (the first they guard, else
// the first they are in), else UTC.
func (s *Server) defaultZone(ctx context.Context, owner string) (string, error) {
	ms, err := s.st.ListMemberships(ctx, owner)
	if err != nil {
		return "", err
	}
	slices.SortStableFunc(ms, func(a, b store.HouseholdMember) int {
		return boolOrder(b.Role == string(policy.Guardian)) - boolOrder(a.Role == string(policy.Guardian))
	})
	for _, m := range ms {
		h, err := s.st.GetHousehold(ctx, m.HouseholdID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		return h.TimeZone, nil
	}
	return "UTC", nil
}

func boolOrder(b bool) int {
	if b {
		return 1
	}
	return 0
}

// conditionsOf reads the conditions sh carries: nil, nil for none. Stored
// conditions that no longer compile are the server's error: the share then
// grants nothing rather than everything.
func conditionsOf(sh *store.UMAShare) (*Conditions, *policy.Conditions, error) {
	if len(sh.Conditions) == 0 {
		return nil, nil, nil
	}
	var c Conditions
	if err := json.Unmarshal(sh.Conditions, &c); err != nil {
		return nil, nil, fmt.Errorf("uma share %s: stored conditions: %w", sh.ID, err)
	}
	loc, err := policy.LoadZone(c.Zone)
	if err != nil {
		return nil, nil, fmt.Errorf("uma share %s: stored conditions: %w", sh.ID, err)
	}
	compiled, err := policy.CompileConditions(c.when(), loc, "conditions")
	if err != nil {
		return nil, nil, fmt.Errorf("uma share %s: stored conditions: %w", sh.ID, err)
	}
	return &c, compiled, nil
}

// SetConditions replaces the conditions of owner's share id (nil or
// limiting nothing: none) and revokes the RPTs resting on it, at once on
// every node (grant.revoke): the requesting party's next RPT is decided on
// the new conditions. A share of another owner is not found.
func (s *Server) SetConditions(ctx context.Context, actor, owner, id string, c *Conditions) (*store.UMAShare, error) {
	sh, err := s.st.GetUMAShare(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sh.OwnerID != owner) {
		return nil, refuse(http.StatusNotFound, "id", "no share with this id is yours")
	}
	if err != nil {
		return nil, err
	}
	raw, err := s.checkConditions(ctx, owner, c)
	if err != nil {
		return nil, err
	}
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.SetUMAShareConditions(ctx, id, raw); err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "uma.share.conditions", resourceRef(sh.ResourceID), auditJSON(map[string]any{"share": id, "conditions": raw}))
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(http.StatusNotFound, "id", "no share with this id is yours")
	}
	if err != nil {
		return nil, err
	}
	sh.Conditions = raw
	return sh, s.revokeShareGrants(ctx, actor, "uma share conditions changed", []*store.UMAShare{sh})
}
