package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// setChunk bounds the ids bound into one IN list: SQLite's default limit
// of host parameters is 32766, PostgreSQL's 65535.
const setChunk = 500

// inChunks calls fn for each run of at most setChunk ids, with the SQL
// list of their placeholders numbered from first.
func (t *txn) inChunks(ids []string, first int, fn func(in string, args []any) error) error {
	for start := 0; start < len(ids); start += setChunk {
		part := ids[start:min(start+setChunk, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		in := strings.TrimSuffix(strings.TrimPrefix(t.placeholders(1, len(part), first), "("), ")")
		if err := fn(in, args); err != nil {
			return err
		}
	}
	return nil
}

// names maps each of ids found in table to its column.
func (t *txn) names(ctx context.Context, table, column string, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	err := t.inChunks(ids, 1, func(in string, args []any) error {
		rows, err := collect(t.q.QueryContext(ctx, "SELECT id, "+column+" FROM "+table+" WHERE id IN ("+in+")", args...))
		if err != nil {
			return fmt.Errorf("%s names: %w", table, err)
		}
		for _, r := range rows {
			out[r[0]] = r[1]
		}
		return nil
	})
	return out, err
}

func (t *txn) UserNames(ctx context.Context, ids []string) (map[string]string, error) {
	return t.names(ctx, "users", "user_name", ids)
}

func (t *txn) GroupNames(ctx context.Context, ids []string) (map[string]string, error) {
	return t.names(ctx, "groups", "display_name", ids)
}

func (s *Store) UserNames(ctx context.Context, ids []string) (map[string]string, error) {
	return s.single().UserNames(ctx, ids)
}

func (s *Store) GroupNames(ctx context.Context, ids []string) (map[string]string, error) {
	return s.single().GroupNames(ctx, ids)
}

func (t *txn) RelationshipsOf(ctx context.Context, kind store.RelKind, end store.RelEnd, ends []store.Ref) ([]store.Relationship, error) {
	if end != store.EndFrom && end != store.EndTo {
		return nil, fmt.Errorf("relationships of: end %q is neither %q nor %q: %w", end, store.EndFrom, store.EndTo, store.ErrInvalidQuery)
	}
	byKind := map[store.Kind][]string{}
	for _, r := range ends {
		byKind[r.Kind] = append(byKind[r.Kind], r.ID)
	}
	var out []store.Relationship
	for k, ids := range byKind {
		err := t.inChunks(ids, 3, func(in string, args []any) error {
			rows, err := t.q.QueryContext(ctx, "SELECT kind, from_kind, from_id, to_kind, to_id, created FROM relationships WHERE kind = "+t.ph(1)+
				" AND "+string(end)+"_kind = "+t.ph(2)+" AND "+string(end)+"_id IN ("+in+")",
				append([]any{string(kind), string(k)}, args...)...)
			if err != nil {
				return fmt.Errorf("relationships of: %w", err)
			}
			defer rows.Close()
			for rows.Next() {
				var r store.Relationship
				if err := rows.Scan(&r.Kind, &r.From.Kind, &r.From.ID, &r.To.Kind, &r.To.ID, timeCol{&r.Created}); err != nil {
					return err
				}
				out = append(out, r)
			}
			return rows.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	sortRelationships(out)
	return out, nil
}

func (s *Store) RelationshipsOf(ctx context.Context, kind store.RelKind, end store.RelEnd, ends []store.Ref) ([]store.Relationship, error) {
	return s.single().RelationshipsOf(ctx, kind, end, ends)
}

// sortRelationships orders rs as ListRelationships's ORDER BY does.
func sortRelationships(rs []store.Relationship) {
	slices.SortFunc(rs, func(a, b store.Relationship) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.From.Kind, b.From.Kind), cmp.Compare(a.From.ID, b.From.ID),
			cmp.Compare(a.To.Kind, b.To.Kind), cmp.Compare(a.To.ID, b.To.ID))
	})
}
