package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// ExplainThings returns the database's plan of the two statements
// ListThings(q) runs (the count and the page), one line per step: EXPLAIN
// QUERY PLAN on SQLite, EXPLAIN on PostgreSQL. Benchmarks and tests read it
// to see that searches use their indexes.
func (s *Store) ExplainThings(ctx context.Context, q store.Query) (count, page string, err error) {
	t := s.single()
	l, err := t.listSQL(thingKind, q, thingColumns, relatedOf{})
	if err != nil {
		return "", "", err
	}
	if count, err = s.explain(ctx, l.count, l.countArgs); err != nil {
		return "", "", err
	}
	page, err = s.explain(ctx, l.query, l.args)
	return count, page, err
}

// ExplainStanding returns the database's plan of Standing(k), as
// ExplainThings does: tests read it to see that each part is found by its
// primary key.
func (s *Store) ExplainStanding(ctx context.Context, k store.StandingKeys) (string, error) {
	return s.explain(ctx, standingSQL[s.cfg.Flavor], []any{k.Grant, k.Thing, k.User})
}

// explain returns the plan of query, one line per step.
func (s *Store) explain(ctx context.Context, query string, args []any) (string, error) {
	explain := "EXPLAIN QUERY PLAN "
	if s.cfg.Flavor == Postgres {
		explain = "EXPLAIN "
	}
	rows, err := s.reader.QueryContext(ctx, explain+query, args...)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var lines []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		// SQLite: id, parent, notused, detail; PostgreSQL: one text column.
		lines = append(lines, fmt.Sprint(vals[len(vals)-1]))
	}
	return strings.Join(lines, "\n"), rows.Err()
}
