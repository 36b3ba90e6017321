package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

const groupColumns = "x.id, x.display_name, x.external_id, x.created, x.modified, x.revision"

func scanGroup(s scanner) (*store.Group, error) {
	var g store.Group
	err := s.Scan(&g.ID, &g.DisplayName, &g.ExternalID, timeCol{&g.Created}, timeCol{&g.Modified}, &g.Revision)
	return &g, err
}

func (t *txn) CreateGroup(ctx context.Context, g *store.Group) error {
	m := store.Meta{ID: g.ID, Revision: 1, Created: now()}
	if m.ID == "" {
		m.ID = newID()
	}
	m.Modified = m.Created
	f := t.flavor()
	res, err := t.q.ExecContext(ctx, `INSERT INTO groups (id, display_name, display_name_lower, external_id, created, modified, revision)
		VALUES `+t.placeholders(1, 7, 1)+` ON CONFLICT DO NOTHING`,
		m.ID, g.DisplayName, strings.ToLower(g.DisplayName), g.ExternalID, f.timeArg(m.Created), f.timeArg(m.Modified), m.Revision)
	if err != nil {
		return fmt.Errorf("create group %q: %w", g.DisplayName, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		if ok, err := t.exists(ctx, "groups", m.ID); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("group id %q: %w", m.ID, store.ErrConflict)
		}
		return store.Conflict("displayName", g.DisplayName, fmt.Errorf("group displayName %q: %w", g.DisplayName, store.ErrConflict))
	}
	members, err := t.setMembers(ctx, m.ID, nil, g.Members)
	if err != nil {
		return err
	}
	g.Meta, g.Members = m, members
	return nil
}

// setMembers turns the member edges of group id from old into next (both sets;
// order and repeats are not significant) and returns next sorted and unique.
func (t *txn) setMembers(ctx context.Context, id string, old, next []store.Ref) ([]store.Ref, error) {
	next = sortRefs(slices.Clone(next))
	next = slices.Compact(next)
	for _, r := range old {
		if !slices.Contains(next, r) {
			if err := t.RemoveRelationship(ctx, store.Relationship{Kind: store.RelMember, From: r, To: store.Ref{Kind: store.KindGroup, ID: id}}); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range next {
		if !slices.Contains(old, r) {
			if err := t.AddRelationship(ctx, store.Relationship{Kind: store.RelMember, From: r, To: store.Ref{Kind: store.KindGroup, ID: id}}); err != nil {
				return nil, fmt.Errorf("group %s: member: %w", id, err)
			}
		}
	}
	if len(next) == 0 {
		return nil, nil
	}
	return next, nil
}

func sortRefs(refs []store.Ref) []store.Ref {
	slices.SortFunc(refs, func(a, b store.Ref) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return refs
}

// loadMembers fills the Members of gs in a few queries.
func (t *txn) loadMembers(ctx context.Context, gs []*store.Group) error {
	byID := make(map[string]*store.Group, len(gs))
	ids := make([]string, 0, len(gs))
	for _, g := range gs {
		byID[g.ID] = g
		ids = append(ids, g.ID)
	}
	return t.inChunks(ids, 2, func(in string, args []any) error {
		rows, err := collect(t.q.QueryContext(ctx, "SELECT to_id, from_kind, from_id FROM relationships WHERE kind = "+t.ph(1)+
			" AND to_kind = 'group' AND to_id IN ("+in+") ORDER BY to_id, from_kind, from_id",
			append([]any{string(store.RelMember)}, args...)...))
		if err != nil {
			return fmt.Errorf("group members: %w", err)
		}
		for _, r := range rows {
			g := byID[r[0]]
			g.Members = append(g.Members, store.Ref{Kind: store.Kind(r[1]), ID: r[2]})
		}
		return nil
	})
}

func (t *txn) getGroup(ctx context.Context, id string, lock bool) (*store.Group, error) {
	q := "SELECT " + groupColumns + " FROM groups AS x WHERE x.id = " + t.ph(1)
	if lock {
		q += t.flavor().forUpdate()
	}
	g, err := scanGroup(t.q.QueryRowContext(ctx, q, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("group %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return g, t.loadMembers(ctx, []*store.Group{g})
}

func (t *txn) GetGroup(ctx context.Context, id string) (*store.Group, error) {
	return t.getGroup(ctx, id, false)
}

func (t *txn) UpdateGroup(ctx context.Context, id string, ifRevision int64, fn func(*store.Group) error) (*store.Group, error) {
	f := t.flavor()
	var oldMembers []store.Ref
	return update(store.KindGroup, id, ifRevision,
		func() (*store.Group, *store.Meta, error) {
			g, err := t.getGroup(ctx, id, true)
			if err != nil {
				return nil, nil, err
			}
			oldMembers = slices.Clone(g.Members)
			return g, &g.Meta, nil
		}, fn,
		func(g *store.Group, prev int64) (bool, error) {
			res, err := t.q.ExecContext(ctx, "UPDATE groups SET display_name = "+t.ph(1)+", display_name_lower = "+t.ph(2)+
				", external_id = "+t.ph(3)+", modified = "+t.ph(4)+", revision = "+t.ph(5)+
				" WHERE id = "+t.ph(6)+" AND revision = "+t.ph(7),
				g.DisplayName, strings.ToLower(g.DisplayName), g.ExternalID, f.timeArg(g.Modified), g.Revision, id, prev)
			if err != nil {
				if t.s.cfg.IsUniqueViolation(err) {
					return false, store.Conflict("displayName", g.DisplayName, fmt.Errorf("group displayName %q: %w", g.DisplayName, store.ErrConflict))
				}
				return false, fmt.Errorf("update group %s: %w", id, err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return false, err
			}
			g.Members, err = t.setMembers(ctx, id, oldMembers, g.Members)
			return err == nil, err
		})
}

func (t *txn) DeleteGroup(ctx context.Context, id string, ifRevision int64) error {
	return t.deleteIdentity(ctx, store.KindGroup, id, ifRevision)
}

func (t *txn) ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error) {
	var gs []*store.Group
	total, err := t.list(ctx, groupKind, q, groupColumns, relatedOf{}, func(rows *sql.Rows) error {
		g, err := scanGroup(rows)
		if err == nil {
			gs = append(gs, g)
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if err := t.loadMembers(ctx, gs); err != nil {
		return nil, 0, err
	}
	return gs, total, nil
}
