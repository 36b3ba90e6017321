package uma

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// Things are resources without registration: every thing with an owner is
// the resource "thing:<thing id>", owned by its owner, with ThingScopes.
// Nothing is stored for it; its description follows the thing (name) and
// the owner relationship (a new owner gets it, and the shares of the old
// owner stop counting because a share names its owner).
const thingPrefix = "thing:"

// ThingResourceType is the type of a thing's resource.
const ThingResourceType = "urn:thingid:uma:resource-type:thing"

// ThingResourceID is the resource id of thing id.
func ThingResourceID(thingID string) string { return thingPrefix + thingID }

// resource returns the registered resource or the thing id names; a thing
// without an owner is not a resource. Unknown is store.ErrNotFound.
func (s *Server) resource(ctx context.Context, id string) (*store.UMAResource, error) {
	thingID, ok := strings.CutPrefix(id, thingPrefix)
	if !ok {
		return s.st.GetUMAResource(ctx, id)
	}
	t, err := s.st.GetThing(ctx, thingID)
	if err != nil {
		return nil, err
	}
	if t.Status != store.StatusActive {
		return nil, fmt.Errorf("thing %s is disabled: %w", thingID, store.ErrNotFound)
	}
	to := store.Ref{Kind: store.KindThing, ID: t.ID}
	rels, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &to})
	if err != nil {
		return nil, err
	}
	if len(rels) == 0 {
		return nil, fmt.Errorf("thing %s has no owner: %w", thingID, store.ErrNotFound)
	}
	name := t.DisplayName
	if name == "" {
		name = strings.TrimSpace(t.Model + " " + t.SerialNumber)
	}
	return &store.UMAResource{ID: id, OwnerID: rels[0].From.ID, Name: name, Type: ThingResourceType,
		Description: string(t.Type), Scopes: slices.Clone(ThingScopes), Created: t.Created, Modified: t.Modified}, nil
}

// ownedResources returns the resources of owner: registered ones and owned things.
func (s *Server) ownedResources(ctx context.Context, owner string) ([]*store.UMAResource, error) {
	rs, err := s.st.ListUMAResources(ctx, store.UMAResourceFilter{OwnerID: owner})
	if err != nil {
		return nil, err
	}
	from := store.Ref{Kind: store.KindUser, ID: owner}
	rels, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, From: &from})
	if err != nil {
		return nil, err
	}
	for _, rel := range rels {
		r, err := s.resource(ctx, ThingResourceID(rel.To.ID))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}
