package storetest

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// SQL is plain SQL on the database a store runs on: what a node of another
// version does to it. *sql.DB is one.
type SQL interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// newerMigration is what a node of the next version may apply while nodes of
// this one still run (docs/architecture.md, Storage: expand-only): a column
// with a default, a table referring to an old one, an index, and the
// version this code does not know. The same SQL on both dialects.
var newerMigration = []string{
	`ALTER TABLE things ADD COLUMN newer_label TEXT NOT NULL DEFAULT ''`,
	`CREATE TABLE newer_records (
		id       TEXT NOT NULL PRIMARY KEY,
		thing_id TEXT NOT NULL REFERENCES things (id) ON DELETE CASCADE
	)`,
	`CREATE INDEX things_newer_label ON things (newer_label)`,
	`INSERT INTO schema_migrations (version, name, applied) VALUES (9999, '9999_newer.sql', '2027-01-01T00:00:00Z')`,
}

// NewerNode is a rolling upgrade seen from a node of this version: a node of
// the next one has migrated the database and written through its new
// schema. This version's node then opens the store, which applies nothing
// and ignores the version it does not know, and it reads, writes and deletes
// as before, keeping what the newer node wrote in its columns. open opens
// the store on the one database each time; db is plain SQL on it.
func NewerNode(t *testing.T, open func(t *testing.T) store.Store, db SQL) {
	s := open(t)
	old := newThing("NEWER-1")
	must(t, s.CreateThing(ctx(t), old))
	must(t, s.Close())

	quoted := "'" + strings.ReplaceAll(old.ID, "'", "''") + "'"
	newer := slices.Concat(newerMigration, []string{
		`UPDATE things SET newer_label = 'from the newer node' WHERE id = ` + quoted,
		`INSERT INTO newer_records (id, thing_id) VALUES ('r1', ` + quoted + `)`,
	})
	for _, q := range newer {
		if _, err := db.ExecContext(ctx(t), q); err != nil {
			t.Fatalf("the newer node: %s: %v", q, err)
		}
	}
	count := func(q string) int {
		t.Helper()
		var n int
		must(t, db.QueryRowContext(ctx(t), q).Scan(&n))
		return n
	}
	versions := count(`SELECT count(*) FROM schema_migrations`)

	s = open(t)
	defer s.Close()
	if got := count(`SELECT count(*) FROM schema_migrations`); got != versions {
		t.Fatalf("opening the store changed schema_migrations: %d versions, had %d", got, versions)
	}
	if count(`SELECT count(*) FROM schema_migrations WHERE version = 9999`) != 1 {
		t.Fatal("the newer node's version is gone")
	}

	got, err := s.GetThing(ctx(t), old.ID)
	must(t, err)
	if got.SerialNumber != "NEWER-1" {
		t.Fatalf("read after the newer migration: %+v", got)
	}
	up, err := s.UpdateThing(ctx(t), old.ID, got.Revision, func(th *store.Thing) error {
		th.DisplayName = "updated by the older node"
		return nil
	})
	must(t, err)
	if up.DisplayName != "updated by the older node" {
		t.Fatalf("update: %+v", up)
	}
	if count(`SELECT count(*) FROM things WHERE newer_label = 'from the newer node' AND id = `+quoted) != 1 {
		t.Fatal("the older node's update lost the newer node's column")
	}
	created := newThing("NEWER-2")
	must(t, s.CreateThing(ctx(t), created))
	l, n, err := s.ListThings(ctx(t), store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpSw, Value: "NEWER-"}, Limit: -1})
	must(t, err)
	if n != 2 || len(l) != 2 {
		t.Fatalf("list after the newer migration: %d things, total %d", len(l), n)
	}
	must(t, s.DeleteThing(ctx(t), old.ID, up.Revision))
	if count(`SELECT count(*) FROM newer_records`) != 0 {
		t.Fatal("the older node's delete left the newer node's row referring to it")
	}
}
