package sqlstore

import (
	"context"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

func relString(r store.Relationship) string {
	return fmt.Sprintf("%s %s:%s -> %s:%s", r.Kind, r.From.Kind, r.From.ID, r.To.Kind, r.To.ID)
}

// end checks that an end of a relationship exists.
func (t *txn) end(ctx context.Context, r store.Relationship, ref store.Ref) error {
	table, ok := tables[ref.Kind]
	if !ok {
		return fmt.Errorf("relationship %s: unknown kind %q: %w", relString(r), ref.Kind, store.ErrNotFound)
	}
	ok, err := t.exists(ctx, table, ref.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("relationship %s: %s %s: %w", relString(r), ref.Kind, ref.ID, store.ErrNotFound)
	}
	return nil
}

func (t *txn) AddRelationship(ctx context.Context, r store.Relationship) error {
	if err := t.end(ctx, r, r.From); err != nil {
		return err
	}
	if err := t.end(ctx, r, r.To); err != nil {
		return err
	}
	created := now()
	if !r.Created.IsZero() {
		created = normTime(r.Created)
	}
	res, err := t.q.ExecContext(ctx, "INSERT INTO relationships (kind, from_kind, from_id, to_kind, to_id, created) VALUES "+
		t.placeholders(1, 6, 1)+" ON CONFLICT DO NOTHING",
		string(r.Kind), string(r.From.Kind), r.From.ID, string(r.To.Kind), r.To.ID, t.flavor().timeArg(created))
	if err != nil {
		return fmt.Errorf("add relationship %s: %w", relString(r), err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("relationship %s: %w", relString(r), store.ErrConflict)
	}
	return nil
}

func (t *txn) RemoveRelationship(ctx context.Context, r store.Relationship) error {
	res, err := t.q.ExecContext(ctx, "DELETE FROM relationships WHERE kind = "+t.ph(1)+" AND from_kind = "+t.ph(2)+
		" AND from_id = "+t.ph(3)+" AND to_kind = "+t.ph(4)+" AND to_id = "+t.ph(5),
		string(r.Kind), string(r.From.Kind), r.From.ID, string(r.To.Kind), r.To.ID)
	if err != nil {
		return fmt.Errorf("remove relationship %s: %w", relString(r), err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("relationship %s: %w", relString(r), store.ErrNotFound)
	}
	return nil
}

func (t *txn) ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error) {
	q := "SELECT kind, from_kind, from_id, to_kind, to_id, created FROM relationships WHERE 1 = 1"
	var args []any
	add := func(cond string, v string) {
		args = append(args, v)
		q += " AND " + cond + " = " + t.ph(len(args))
	}
	if f.Kind != "" {
		add("kind", string(f.Kind))
	}
	if f.From != nil {
		add("from_kind", string(f.From.Kind))
		add("from_id", f.From.ID)
	}
	if f.To != nil {
		add("to_kind", string(f.To.Kind))
		add("to_id", f.To.ID)
	}
	rows, err := t.q.QueryContext(ctx, q+" ORDER BY created, kind, from_kind, from_id, to_kind, to_id", args...)
	if err != nil {
		return nil, fmt.Errorf("list relationships: %w", err)
	}
	defer rows.Close()
	var out []store.Relationship
	for rows.Next() {
		var r store.Relationship
		if err := rows.Scan(&r.Kind, &r.From.Kind, &r.From.ID, &r.To.Kind, &r.To.ID, timeCol{&r.Created}); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
