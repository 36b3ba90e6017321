package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/thingid/thingid/internal/store"
)

// Helpers shared by the identity kinds: IDs, times, the optimistic-concurrency
// loop, deletes with their edges, and paged lists.

// newID returns a UUIDv7 (RFC 9562): time-ordered, so that a factory batch of a
// million things appends to the primary-key and foreign-key indexes instead of
// splitting pages all over them, which keeps bulk inserts fast once the table
// outgrows the page cache.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

func now() time.Time { return normTime(time.Now()) }

// joinedCol scans a NOT NULL text column of a LEFT JOINed table: NULL says
// the join found no row.
type joinedCol struct {
	found *bool
	s     *string
}

func (c joinedCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.found, *c.s = false, ""
	case string:
		*c.found, *c.s = true, v
	case []byte:
		*c.found, *c.s = true, string(v)
	default:
		return fmt.Errorf("text column: unexpected %T", src)
	}
	return nil
}

// timeCol scans a time column of either flavor: INTEGER microseconds (SQLite)
// or TIMESTAMPTZ (PostgreSQL); NULL is the zero time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	case time.Time:
		*c.t = v.UTC()
	default:
		return fmt.Errorf("time column: unexpected %T", src)
	}
	return nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// placeholders returns "(p1, p2, ...), (...)" for rows rows of cols columns
// starting at parameter first; the statement's other parameters must come
// before it. SQLite gets anonymous "?" (numbered first, first+1, ... by
// position): binding numbered ones costs a linear name lookup each, which is
// quadratic over the thousands of parameters of a multi-row INSERT.
func (t *txn) placeholders(rows, cols, first int) string {
	var b strings.Builder
	n := first
	ph := t.ph
	if t.flavor() == SQLite {
		ph = func(int) string { return "?" }
	}
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteString(ph(n))
			n++
		}
		b.WriteByte(')')
	}
	return b.String()
}

// exists reports whether table has a row with id.
func (t *txn) exists(ctx context.Context, table, id string) (bool, error) {
	var one int
	err := t.q.QueryRowContext(ctx, "SELECT 1 FROM "+table+" WHERE id = "+t.ph(1), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// maxUpdateAttempts bounds how often an update with ifRevision 0 re-reads and
// re-runs fn after a concurrent change.
const maxUpdateAttempts = 10

// update is the optimistic-concurrency loop of Update*: load the row, check the
// expected revision, run fn, restore what fn must not change, and write it back
// only if the stored revision is still the one read.
func update[T any](kind store.Kind, id string, ifRevision int64,
	load func() (T, *store.Meta, error), fn func(T) error,
	write func(v T, prevRevision int64) (bool, error),
) (T, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		v, m, err := load()
		if err != nil {
			return zero, err
		}
		prev := *m
		if ifRevision != 0 && prev.Revision != ifRevision {
			return zero, fmt.Errorf("%s %s: stored revision %d, expected %d: %w", kind, id, prev.Revision, ifRevision, store.ErrStale)
		}
		if err := fn(v); err != nil {
			return zero, err
		}
		*m = store.Meta{ID: prev.ID, Revision: prev.Revision + 1, Created: prev.Created, Modified: now()}
		ok, err := write(v, prev.Revision)
		if err != nil {
			return zero, err
		}
		if ok {
			return v, nil
		}
		if ifRevision != 0 || attempt == maxUpdateAttempts {
			return zero, fmt.Errorf("%s %s: changed concurrently: %w", kind, id, store.ErrStale)
		}
	}
}

// deleteIdentity deletes the row id of table (optionally only at revision
// ifRevision) and every relationship it is an end of.
func (t *txn) deleteIdentity(ctx context.Context, kind store.Kind, id string, ifRevision int64) error {
	table := tables[kind]
	q, args := "DELETE FROM "+table+" WHERE id = "+t.ph(1), []any{id}
	if ifRevision != 0 {
		q += " AND revision = " + t.ph(2)
		args = append(args, ifRevision)
	}
	res, err := t.q.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		ok, err := t.exists(ctx, table, id)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("%s %s: stored revision is not %d: %w", kind, id, ifRevision, store.ErrStale)
		}
		return fmt.Errorf("%s %s: %w", kind, id, store.ErrNotFound)
	}
	for _, end := range []string{"from", "to"} {
		if _, err := t.q.ExecContext(ctx, "DELETE FROM relationships WHERE "+end+"_kind = "+t.ph(1)+" AND "+end+"_id = "+t.ph(2), string(kind), id); err != nil {
			return fmt.Errorf("delete relationships of %s %s: %w", kind, id, err)
		}
	}
	return nil
}

// tables maps identity kinds to their tables.
var tables = map[store.Kind]string{store.KindUser: "users", store.KindThing: "things", store.KindGroup: "groups"}

// list runs the COUNT (unless q.NoTotal) and the page query of q over k, calling scan for each row
// of the page; columns are the SELECT list (table alias x), followed by those of with.
func (t *txn) list(ctx context.Context, k *kindSQL, q store.Query, columns string, with relatedOf, scan func(*sql.Rows) error) (int, error) {
	l, err := t.listSQL(k, q, columns, with)
	if err != nil {
		return 0, err
	}
	total := -1
	if !q.NoTotal {
		if err := t.q.QueryRowContext(ctx, l.count, l.countArgs...).Scan(&total); err != nil {
			return 0, fmt.Errorf("count %s: %w", k.table, err)
		}
	}
	if q.Limit == 0 {
		return total, nil
	}
	if k.seeks(t.flavor(), q) {
		// At most Limit+1 rows, found through an index: nothing to
		// interrupt. A context that can end costs every statement a
		// goroutine or two (the SQLite driver's watch to interrupt it,
		// database/sql's to close its rows, pgx's context watcher); one
		// that has ended still stops the page before it starts.
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("list %s: %w", k.table, err)
		}
		ctx = context.WithoutCancel(ctx)
	}
	rows, err := t.q.QueryContext(ctx, l.query, l.args...)
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", k.table, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return 0, err
		}
	}
	return total, rows.Err()
}

// listing is the SQL of a List call: the count of the matches and the page.
type listing struct {
	count, query    string
	countArgs, args []any
}

func (t *txn) listSQL(k *kindSQL, q store.Query, columns string, with relatedOf) (listing, error) {
	c := &compiler{f: t.flavor(), k: k}
	where, err := c.where(q.Filter)
	if err != nil {
		return listing{}, err
	}
	whereArgs := len(c.args) // the COUNT binds only these; ORDER BY may add more
	order, err := c.orderBy(q)
	if err != nil {
		return listing{}, err
	}
	more, err := with.columns(c)
	if err != nil {
		return listing{}, err
	}
	columns += more
	l := listing{count: "SELECT COUNT(*) FROM " + k.table + " AS x WHERE " + where, countArgs: c.args[:whereArgs]}
	if q.CountLimit > 0 {
		l.count = "SELECT COUNT(*) FROM (SELECT 1 FROM " + k.table + " AS x WHERE " + where + " LIMIT " + strconv.Itoa(q.CountLimit+1) + ") AS c"
	}
	limit := int64(q.Limit)
	if limit < 0 {
		limit = 1<<63 - 1 // no limit: both databases accept the largest BIGINT
	}
	l.query = "SELECT " + columns + " FROM " + k.table + " AS x WHERE " + where + " ORDER BY " + order +
		" LIMIT " + c.arg(limit) + " OFFSET " + c.arg(int64(max(q.Offset, 0)))
	l.args = c.args
	return l, nil
}
