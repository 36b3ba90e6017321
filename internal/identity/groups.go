package identity

import (
	"context"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// CreateGroup validates g and stores it with its members.
func (s *Service) CreateGroup(ctx context.Context, actor string, g *store.Group) (*store.Group, error) {
	if err := s.WithTx(ctx, actor, func(tx *Tx) error { return tx.CreateGroup(ctx, g) }); err != nil {
		return nil, err
	}
	return g, nil
}

// UpdateGroup applies fn to the stored group (members included) and validates it.
func (s *Service) UpdateGroup(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Group) error) (*store.Group, error) {
	var out *store.Group
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		g, err := tx.UpdateGroup(ctx, id, ifRevision, func(g *store.Group) error {
			if err := fn(g); err != nil {
				return err
			}
			return normalizeGroup(g)
		})
		if err != nil {
			return nil, err
		}
		out = g
		return []change{{action: "group.update", target: store.Ref{Kind: store.KindGroup, ID: id}}}, nil
	})
	return out, err
}

// DeleteGroup removes a group and its memberships.
func (s *Service) DeleteGroup(ctx context.Context, actor, id string, ifRevision int64) error {
	return s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		if err := tx.DeleteGroup(ctx, id, ifRevision); err != nil {
			return nil, err
		}
		return []change{{action: "group.delete", target: store.Ref{Kind: store.KindGroup, ID: id}}}, nil
	})
}

// GetGroup reads one group with its members.
func (s *Service) GetGroup(ctx context.Context, id string) (*store.Group, error) {
	return s.store.GetGroup(ctx, id)
}

// ListGroups reads a page of groups.
func (s *Service) ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error) {
	return s.store.ListGroups(ctx, q)
}

func normalizeGroup(g *store.Group) error {
	g.DisplayName = strings.TrimSpace(g.DisplayName)
	if err := checkText("displayName", g.DisplayName, 1, 256); err != nil {
		return err
	}
	if err := checkText("externalId", g.ExternalID, 0, 256); err != nil {
		return err
	}
	seen := make(map[store.Ref]bool, len(g.Members))
	members := g.Members[:0]
	for _, m := range g.Members {
		if !validKind(m.Kind) {
			return invalid("members.type", "unknown kind %q (want user, thing or group)", m.Kind)
		}
		if m.ID == "" {
			return invalid("members.value", "is required")
		}
		if m.Kind == store.KindGroup && m.ID == g.ID && g.ID != "" {
			return invalid("members", "a group cannot be a member of itself")
		}
		if !seen[m] {
			seen[m] = true
			members = append(members, m)
		}
	}
	g.Members = members
	return nil
}
