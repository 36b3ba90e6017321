// Package pgtest gives a test its own empty PostgreSQL database: a fresh
// schema on the server THINGID_TEST_POSTGRES_DSN names, dropped when the
// test ends. Imported only by tests.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the driver of the admin connection
)

// DSN creates a fresh schema and returns a DSN whose search_path selects
// it. Without THINGID_TEST_POSTGRES_DSN the test is skipped, or fails when
// CI is true: CI must run the PostgreSQL tests.
func DSN(t testing.TB) string {
	t.Helper()
	base := baseDSN(t)
	name := create(t, base, "test_", "SCHEMA", " CASCADE")
	if !strings.HasPrefix(base, "postgres://") && !strings.HasPrefix(base, "postgresql://") {
		return base + " search_path=" + name // key=value form
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// Database creates a fresh database (for tools that take a whole database,
// such as pg_dump, where a schema would need a search_path libpq does not
// take in a URL) and returns a postgres:// DSN naming it, and its name.
func Database(t testing.TB) (dsn, name string) {
	t.Helper()
	base := baseDSN(t)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("THINGID_TEST_POSTGRES_DSN must be a postgres:// URL for a database of a test's own: %v", err)
	}
	name = create(t, base, "test_", "DATABASE", " WITH (FORCE)")
	u.Path = "/" + name
	return u.String(), name
}

// baseDSN is THINGID_TEST_POSTGRES_DSN. Without it the test is skipped, or
// fails when CI is true: CI must run the PostgreSQL tests.
func baseDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("THINGID_TEST_POSTGRES_DSN")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THINGID_TEST_POSTGRES_DSN is not set; CI must run the PostgreSQL tests (scripts/start-postgres.sh)")
		}
		t.Skip("THINGID_TEST_POSTGRES_DSN not set: run export THINGID_TEST_POSTGRES_DSN=$(scripts/start-postgres.sh) to run this test on PostgreSQL")
	}
	return base
}

// create makes a schema or database (kind) with a generated name on the
// server base names, dropped with dropSuffix when the test ends.
func create(t testing.TB, base, prefix, kind, dropSuffix string) string {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	name := prefix + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec("CREATE " + kind + " " + name); err != nil { // name is generated here, not input
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP "+kind+" IF EXISTS "+name+dropSuffix); err != nil {
			t.Errorf("drop %s %s: %v", strings.ToLower(kind), name, err)
		}
		admin.Close()
	})
	return name
}
