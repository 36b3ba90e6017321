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

// Related reads, for each chunk of ids, one statement: a branch per spec,
// each joined to the users and groups that name its other end.
func (t *txn) Related(ctx context.Context, self store.Kind, ids []string, specs []store.RelSpec) ([]store.Related, error) {
	type found struct {
		store.Related
		rel store.Relationship
	}
	var out []found
	for _, sp := range specs {
		if sp.End != store.EndFrom && sp.End != store.EndTo {
			return nil, fmt.Errorf("related: end %q is neither %q nor %q: %w", sp.End, store.EndFrom, store.EndTo, store.ErrInvalidQuery)
		}
	}
	if len(specs) == 0 {
		return nil, nil
	}
	for start := 0; start < len(ids); start += setChunk {
		part := ids[start:min(start+setChunk, len(ids))]
		// $1 is self's kind, $2.. the specs' relationship kinds, then the ids.
		args := []any{string(self)}
		for _, sp := range specs {
			args = append(args, string(sp.Kind))
		}
		in := make([]string, len(part))
		for i, id := range part {
			in[i] = t.ph(len(args) + 1)
			args = append(args, id)
		}
		var q strings.Builder
		for i, sp := range specs {
			end, other := string(sp.End), "to"
			if sp.End == store.EndTo {
				other = "from"
			}
			if i > 0 {
				q.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&q, "SELECT %d, r.kind, r.from_kind, r.from_id, r.to_kind, r.to_id, r.created, COALESCE(u.user_name, g.display_name, '')"+
				" FROM relationships AS r"+
				" LEFT JOIN users AS u ON r.%[2]s_kind = 'user' AND u.id = r.%[2]s_id"+
				" LEFT JOIN groups AS g ON r.%[2]s_kind = 'group' AND g.id = r.%[2]s_id"+
				" WHERE r.kind = %[3]s AND r.%[4]s_kind = %[5]s AND r.%[4]s_id IN (%[6]s)",
				i, other, t.ph(2+i), end, t.ph(1), strings.Join(in, ", "))
		}
		rows, err := t.q.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("related: %w", err)
		}
		for rows.Next() {
			var f found
			r := &f.rel
			if err := rows.Scan(&f.Spec, &r.Kind, &r.From.Kind, &r.From.ID, &r.To.Kind, &r.To.ID, timeCol{&r.Created}, &f.Name); err != nil {
				rows.Close()
				return nil, err
			}
			f.Self, f.Other = r.From.ID, r.To
			if specs[f.Spec].End == store.EndTo {
				f.Self, f.Other = r.To.ID, r.From
			}
			if f.Other.Kind == store.KindThing {
				f.Name = f.Other.ID
			}
			out = append(out, f)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(out, func(a, b found) int {
		return cmp.Or(cmp.Compare(a.Spec, b.Spec), compareRelationships(a.rel, b.rel))
	})
	rel := make([]store.Related, len(out))
	for i, f := range out {
		rel[i] = f.Related
	}
	return rel, nil
}

func (s *Store) Related(ctx context.Context, self store.Kind, ids []string, specs []store.RelSpec) ([]store.Related, error) {
	return s.single().Related(ctx, self, ids, specs)
}

// compareRelationships orders relationships as ListRelationships's ORDER BY does.
func compareRelationships(a, b store.Relationship) int {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.From.Kind, b.From.Kind), cmp.Compare(a.From.ID, b.From.ID),
		cmp.Compare(a.To.Kind, b.To.Kind), cmp.Compare(a.To.ID, b.To.ID))
}
