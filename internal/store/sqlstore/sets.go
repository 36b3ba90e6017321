package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
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

// relSQL is the SQL of what a spec selects of the identities at its end:
// the relationships joined to the users and groups that name their other
// end (r, u and g), with the name's expression.
type relSQL struct {
	end, other string // columns' prefixes: "from" or "to"
	from, name string
}

func newRelSQL(sp store.RelSpec) (relSQL, error) {
	q := relSQL{end: string(sp.End), other: "to"}
	switch sp.End {
	case store.EndFrom:
	case store.EndTo:
		q.other = "from"
	default:
		return relSQL{}, fmt.Errorf("related: end %q is neither %q nor %q: %w", sp.End, store.EndFrom, store.EndTo, store.ErrInvalidQuery)
	}
	o := "r." + q.other
	q.from = " FROM relationships AS r" +
		" LEFT JOIN users AS u ON " + o + "_kind = 'user' AND u.id = " + o + "_id" +
		" LEFT JOIN groups AS g ON " + o + "_kind = 'group' AND g.id = " + o + "_id"
	q.name = "COALESCE(u.user_name, g.display_name, '')"
	return q, nil
}

// named names a thing at the other end of r by its id, which is what
// names it in the directory (a thing has no name column to join).
func named(r store.Related) store.Related {
	if r.Other.Kind == store.KindThing {
		r.Name = r.Other.ID
	}
	return r
}

// Related reads, for each chunk of ids, one statement: a branch per spec,
// each joined to the users and groups that name its other end.
func (t *txn) Related(ctx context.Context, self store.Kind, ids []string, specs []store.RelSpec) ([]store.Related, error) {
	type found struct {
		store.Related
		rel store.Relationship
	}
	sqls := make([]relSQL, len(specs))
	for i, sp := range specs {
		var err error
		if sqls[i], err = newRelSQL(sp); err != nil {
			return nil, err
		}
	}
	if len(specs) == 0 {
		return nil, nil
	}
	var out []found
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
		for i, rs := range sqls {
			if i > 0 {
				q.WriteString(" UNION ALL ")
			}
			q.WriteString("SELECT " + strconv.Itoa(i) + ", r.kind, r.from_kind, r.from_id, r.to_kind, r.to_id, r.created, " + rs.name + rs.from +
				" WHERE r.kind = " + t.ph(2+i) + " AND r." + rs.end + "_kind = " + t.ph(1) + " AND r." + rs.end + "_id IN (" + strings.Join(in, ", ") + ")")
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
			f.Related = named(f.Related)
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

// relatedOf is what a list reads of each identity of kind self besides its
// columns: what specs select of it, in the same statement (none without
// specs).
type relatedOf struct {
	self  store.Kind
	specs []store.RelSpec
}

// columns returns the SELECT list items reading, for the row x, what each
// spec selects: a correlated subquery aggregating the other ends, their
// names and the relationships' times into a JSON array (decode reads it).
// The aggregate is not ordered in SQL: SQLite sorts an ordered aggregate
// in a temporary table for every row, which cost as much as a second
// statement; decode sorts the few elements.
func (w relatedOf) columns(c *compiler) (string, error) {
	var b strings.Builder
	for _, sp := range w.specs {
		rs, err := newRelSQL(sp)
		if err != nil {
			return "", err
		}
		o := "r." + rs.other
		b.WriteString(", (SELECT " + c.f.jsonObjects("'k'", o+"_kind", "'i'", o+"_id", "'n'", rs.name, "'c'", c.f.micros("r.created")) + rs.from +
			" WHERE r.kind = " + c.arg(string(sp.Kind)) + " AND r." + rs.end + "_kind = " + c.arg(string(w.self)) +
			" AND r." + rs.end + "_id = x.id)")
	}
	return b.String(), nil
}

// relEnd is an element of what columns aggregates.
type relEnd struct {
	Kind    store.Kind `json:"k"`
	ID      string     `json:"i"`
	Name    string     `json:"n"`
	Created int64      `json:"c"`
}

// decode appends to out what spec i selected of the identity self, read as
// columns wrote it, in ListRelationships's order: by time, then (the kind
// and self's end being the same) by the other end.
func (w relatedOf) decode(out []store.Related, i int, self string, col []byte) ([]store.Related, error) {
	var ends []relEnd
	if err := json.Unmarshal(col, &ends); err != nil {
		return nil, fmt.Errorf("related of %s %s: %w", w.self, self, err)
	}
	slices.SortFunc(ends, func(a, b relEnd) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	for _, e := range ends {
		out = append(out, named(store.Related{Spec: i, Self: self, Other: store.Ref{Kind: e.Kind, ID: e.ID}, Name: e.Name}))
	}
	return out, nil
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
