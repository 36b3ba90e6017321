package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/postgres"
	"github.com/thingid/thingid/internal/store/storetest"
)

// dsn returns the test server's DSN (scripts/start-postgres.sh prints one).
func dsn(t testing.TB) string {
	d := os.Getenv("THINGID_TEST_POSTGRES_DSN")
	if d == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THINGID_TEST_POSTGRES_DSN is not set; CI must run the PostgreSQL tests (scripts/start-postgres.sh)")
		}
		t.Skip("THINGID_TEST_POSTGRES_DSN not set: run export THINGID_TEST_POSTGRES_DSN=$(scripts/start-postgres.sh) to test PostgreSQL")
	}
	return d
}

// schema creates a fresh schema, dropped when the test ends, and returns a DSN
// whose search_path selects it: every test gets an isolated, empty database.
func schema(t testing.TB) (string, *sql.DB) {
	base := dsn(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	name := "test_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec("CREATE SCHEMA " + name); err != nil { // name is generated here, not input
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
		admin.Close()
	})
	return withSearchPath(t, base, name), admin
}

func withSearchPath(t testing.TB, base, schema string) string {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema
}

func open(t testing.TB) (store.Store, *sql.DB, string) {
	d, admin := schema(t)
	s, err := postgres.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, admin, d
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { s, _, _ := open(t); return s })
}

func TestOAuthConformance(t *testing.T) {
	storetest.OAuth(t, func(t *testing.T) store.Store { s, _, _ := open(t); return s })
}

func TestUMAConformance(t *testing.T) {
	storetest.UMA(t, func(t *testing.T) store.Store { s, _, _ := open(t); return s })
}

func TestHouseholdConformance(t *testing.T) {
	storetest.Households(t, func(t *testing.T) store.Store { s, _, _ := open(t); return s })
}

// TestAuditIsAppendOnly goes around the store: even raw SQL cannot change or
// delete an audit record.
func TestAuditIsAppendOnly(t *testing.T) {
	s, _, d := open(t)
	if err := s.AppendAudit(t.Context(), store.AuditRecord{Actor: "system", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", d)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"UPDATE audit SET actor = 'mallory'", "DELETE FROM audit", "TRUNCATE audit"} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only trigger to refuse", q, err)
		}
	}
	recs, err := s.ListAudit(t.Context(), store.AuditQuery{})
	if err != nil || len(recs) != 1 || recs[0].Actor != "system" {
		t.Fatalf("audit changed: %+v %v", recs, err)
	}
}

// TestConcurrentOpen opens one schema from several nodes at once: the
// migration runs once and nobody fails.
func TestConcurrentOpen(t *testing.T) {
	d, _ := schema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(context.Background(), d)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkCreateThings is the factory path: b.N things with one MAC each, in
// batches of 2000. For the 1M figure: -bench CreateThings -benchtime 1000000x.
func BenchmarkCreateThings(b *testing.B) {
	s, _, _ := open(b)
	storetest.BenchmarkCreateThings(b, s, 2000)
}

func TestPKIConformance(t *testing.T) {
	storetest.PKI(t, func(t *testing.T) store.Store { s, _, _ := open(t); return s })
}

// TestInvitationsUpgrade takes a schema back to migration 0012's
// invitations and opens it again: 0015 keeps the invitation.
func TestInvitationsUpgrade(t *testing.T) {
	d, _ := schema(t)
	storetest.InvitationsUpgrade(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t *testing.T, household, user string) {
		db, err := sql.Open("pgx", d)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range []string{
			"DROP TABLE household_invitations",
			`CREATE TABLE household_invitations (
				id           TEXT    NOT NULL PRIMARY KEY,
				household_id TEXT    NOT NULL REFERENCES households (id) ON DELETE CASCADE,
				invitee_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				role         TEXT    NOT NULL,
				invited_by   TEXT    NOT NULL,
				created      TIMESTAMPTZ NOT NULL,
				expires_at   TIMESTAMPTZ NOT NULL
			)`,
			"CREATE INDEX household_invitations_household ON household_invitations (household_id)",
			"CREATE INDEX household_invitations_invitee ON household_invitations (invitee_id)",
			"INSERT INTO household_invitations VALUES ('inv-1', '" + household + "', '" + user + "', 'guest', 'someone', now(), now() + interval '1 hour')",
			"DELETE FROM schema_migrations WHERE version = 15",
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	})
}
