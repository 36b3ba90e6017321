package sqlstore

import (
	"embed"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Flavor is the SQL dialect of a backend. It is the only place where the SQL
// text of the two databases differs; everything else in this package is shared.
type Flavor int

const (
	// SQLite: modernc.org/sqlite. Times are stored as INTEGER microseconds, JSON
	// as TEXT read with the JSON1 functions; the backend must register the
	// Unicode-aware SQL function LowerFunc (SQLite's own lower() is ASCII-only).
	SQLite Flavor = iota + 1
	// Postgres: PostgreSQL through pgx's database/sql driver. Times are
	// TIMESTAMPTZ, JSON is JSONB.
	Postgres
)

// LowerFunc is the name of the scalar SQL function the SQLite backend registers
// to lower-case text like strings.ToLower, so that case-insensitive filters
// agree with the Go-lowered unique columns.
const LowerFunc = "thingid_lower"

// migrationsFS holds each flavor's migrations, NNNN_name.sql, applied in
// order. Within a release they only expand the schema (new tables, nullable
// columns or columns with a DEFAULT, indexes added or replaced under the same
// name): nodes of the previous version keep running on it during a rolling
// upgrade. Dropping, renaming, changing a type or adding NOT NULL to an
// existing column waits for a later release; TestMigrationsExpandOnly
// refuses it above 0030 (docs/architecture.md, Storage).
//
//go:embed migrations
var migrationsFS embed.FS

func (f Flavor) String() string {
	switch f {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return "flavor(" + strconv.Itoa(int(f)) + ")"
}

func (f Flavor) valid() bool { return f == SQLite || f == Postgres }

// migrations returns the flavor's migration files (NNNN_name.sql).
func (f Flavor) migrations() fs.FS {
	sub, err := fs.Sub(migrationsFS, "migrations/"+f.String())
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// placeholder returns the SQL text of the n-th (1-based) bind parameter.
// Both flavors use numbered parameters so that compiled fragments can be
// combined in any order and a parameter can be referenced twice.
func (f Flavor) placeholder(n int) string {
	if f == Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?" + strconv.Itoa(n)
}

// lower returns SQL lower-casing expr the way strings.ToLower does.
func (f Flavor) lower(expr string) string {
	if f == Postgres {
		return "lower(" + expr + ")"
	}
	return LowerFunc + "(" + expr + ")"
}

// binaryOrder returns text expr with a collation that orders by code point, so
// that gt/lt and sorting agree between SQLite (BINARY) and PostgreSQL whatever
// the database's locale.
func (f Flavor) binaryOrder(expr string) string {
	if f == Postgres {
		return expr + ` COLLATE "C"`
	}
	return expr
}

// timeArg converts t to the bind value of a time column.
func (f Flavor) timeArg(t time.Time) any {
	t = normTime(t)
	if f == Postgres {
		return t
	}
	return t.UnixMicro()
}

// nullTimeArg is timeArg with the zero time stored as NULL.
func (f Flavor) nullTimeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return f.timeArg(t)
}

// normTime is how every time is stored: UTC, truncated to microseconds so that
// both databases round-trip it exactly.
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// jsonText returns SQL reading the text at a fixed path (field names from the
// catalog, never from input) of JSON column col; NULL when absent.
func (f Flavor) jsonText(col string, path ...string) string {
	if f == Postgres {
		return col + " #>> '{" + strings.Join(path, ",") + "}'"
	}
	return "json_extract(" + col + ", '$." + strings.Join(path, ".") + "')"
}

// jsonBool returns SQL reading the boolean at a fixed path of JSON column col.
func (f Flavor) jsonBool(col string, path ...string) string {
	if f == Postgres {
		return "(" + col + " #> '{" + strings.Join(path, ",") + "}')::boolean"
	}
	return "json_extract(" + col + ", '$." + strings.Join(path, ".") + "')"
}

// jsonObjects returns SQL aggregating the rows of a query into one JSON
// array of objects of the given keys and values ('[]' when there are none),
// in no particular order.
func (f Flavor) jsonObjects(keysAndValues ...string) string {
	if f == Postgres {
		return "COALESCE(json_agg(json_build_object(" + strings.Join(keysAndValues, ", ") + ")), '[]')"
	}
	return "json_group_array(json_object(" + strings.Join(keysAndValues, ", ") + "))"
}

// micros returns SQL reading time column col as microseconds since the Unix
// epoch (how SQLite stores it).
func (f Flavor) micros(col string) string {
	if f == Postgres {
		return "(EXTRACT(EPOCH FROM " + col + ") * 1000000)::bigint"
	}
	return col
}

// jsonElements returns the FROM item iterating the elements of the JSON array
// at key of column col, aliased e, and the SQL of an element's sub-field.
func (f Flavor) jsonElements(col, key string) (from string, sub func(name string, t store.FieldType) string) {
	if f == Postgres {
		return "jsonb_array_elements(" + col + " -> '" + key + "') AS e(v)",
			func(name string, t store.FieldType) string {
				if t == store.Bool {
					return "(e.v -> '" + name + "')::boolean"
				}
				return "(e.v ->> '" + name + "')"
			}
	}
	return "json_each(" + col + ", '$." + key + "') AS e",
		func(name string, _ store.FieldType) string {
			return "json_extract(e.value, '$." + name + "')"
		}
}

// jsonKind is the JSON type a Dynamic comparison is restricted to.
type jsonKind int

const (
	jsonString jsonKind = iota
	jsonNumber
	jsonBool
)

// attr returns a boolean SQL expression, never NULL, that is true when the
// thing's free attribute named by the bind parameter keyPH has JSON type k and
// pred holds for its value (pred receives the SQL of the value as text, number
// or boolean).
func (f Flavor) attr(keyPH string, k jsonKind, pred func(val string) string) string {
	if f == Postgres {
		ref := "x.attributes -> " + keyPH + "::text"
		switch k {
		case jsonString:
			return "COALESCE(jsonb_typeof(" + ref + ") = 'string' AND " + pred("(x.attributes ->> "+keyPH+"::text)") + ", FALSE)"
		case jsonNumber:
			// CASE guarantees the cast only sees numbers.
			return "(CASE WHEN jsonb_typeof(" + ref + ") = 'number' THEN " + pred("("+ref+")::float8") + " ELSE FALSE END)"
		default:
			return "(CASE WHEN jsonb_typeof(" + ref + ") = 'boolean' THEN " + pred("("+ref+")::boolean") + " ELSE FALSE END)"
		}
	}
	// json_each binds the attribute name as a plain value, so any name works
	// (a JSON path would need quoting rules SQLite does not offer).
	types := map[jsonKind]string{jsonString: "'text'", jsonNumber: "'integer', 'real'", jsonBool: "'true', 'false'"}[k]
	return "EXISTS (SELECT 1 FROM json_each(x.attributes) AS a WHERE a.key = " + keyPH +
		" AND a.type IN (" + types + ") AND " + pred("a.value") + ")"
}

// attrPresent returns SQL true when the free attribute keyPH exists, is not
// JSON null and not the empty string.
func (f Flavor) attrPresent(keyPH string) string {
	if f == Postgres {
		ref := "x.attributes -> " + keyPH + "::text"
		return "COALESCE(jsonb_typeof(" + ref + ") <> 'null' AND " + ref + ` <> '""'::jsonb, FALSE)`
	}
	return "EXISTS (SELECT 1 FROM json_each(x.attributes) AS a WHERE a.key = " + keyPH +
		" AND a.type <> 'null' AND NOT (a.type = 'text' AND a.value = ''))"
}

// attrSort returns the SQL sort key of free attribute keyPH (NULL when absent).
func (f Flavor) attrSort(keyPH string) string {
	if f == Postgres {
		return "(x.attributes -> " + keyPH + "::text)"
	}
	return "(SELECT a.value FROM json_each(x.attributes) AS a WHERE a.key = " + keyPH + ")"
}

// forUpdate is appended to the read of a row about to be updated. PostgreSQL
// locks the row so concurrent updaters queue instead of retrying; SQLite
// transactions are BEGIN IMMEDIATE and hold the database write lock already.
func (f Flavor) forUpdate() string {
	if f == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// lockMigrations serializes migrations between processes opening the same
// database at once. SQLite's BEGIN IMMEDIATE already holds the write lock.
func (f Flavor) lockMigrations() string {
	if f == Postgres {
		return "SELECT pg_advisory_xact_lock(7351226107)" // arbitrary, fixed key: "thingid migrations"
	}
	return ""
}

// lockAudit makes audit appends commit in Seq order in PostgreSQL, where
// identity values are handed out before commit: without it a reader paging by
// AfterSeq could skip a record that commits after a higher Seq. SQLite has a
// single writer.
func (f Flavor) lockAudit() string {
	if f == Postgres {
		return "SELECT pg_advisory_xact_lock(7351226108)" // arbitrary, fixed key: "thingid audit"
	}
	return ""
}

// maxRowsPerInsert bounds multi-row INSERTs: SQLite allows 32766 bind
// parameters per statement, PostgreSQL 65535.
func (f Flavor) maxRowsPerInsert(cols int) int {
	limit := 32766
	if f == Postgres {
		limit = 65535
	}
	return min(500, limit/cols)
}

func (f Flavor) check() error {
	if !f.valid() {
		return fmt.Errorf("sqlstore: unknown flavor %v", f)
	}
	return nil
}
