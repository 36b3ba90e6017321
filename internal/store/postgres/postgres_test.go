package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/postgres"
	"github.com/thingid/thingid/internal/store/postgres/pgtest"
	"github.com/thingid/thingid/internal/store/storetest"
)

// open opens the store on a fresh schema and returns it with the schema's DSN.
func open(t testing.TB) (store.Store, string) {
	d := pgtest.DSN(t)
	s, err := postgres.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}

func TestOAuthConformance(t *testing.T) {
	storetest.OAuth(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}

func TestUMAConformance(t *testing.T) {
	storetest.UMA(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}

func TestHouseholdConformance(t *testing.T) {
	storetest.Households(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}

// TestAuditIsAppendOnly goes around the store: even raw SQL cannot change or
// delete an audit record.
func TestAuditIsAppendOnly(t *testing.T) {
	s, d := open(t)
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
	d := pgtest.DSN(t)
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
	s, _ := open(b)
	storetest.BenchmarkCreateThings(b, s, 2000)
}

func BenchmarkStanding(b *testing.B) {
	s, _ := open(b)
	storetest.BenchmarkStanding(b, s)
}

func TestPKIConformance(t *testing.T) {
	storetest.PKI(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}

// TestInvitationsUpgrade takes a schema back to migration 0012's
// invitations and opens it again: 0015 keeps the invitation.
func TestInvitationsUpgrade(t *testing.T) {
	d := pgtest.DSN(t)
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

// TestNewerNode: a node of the next version migrated the schema and wrote
// through it; this version opens it, applies nothing and works.
func TestNewerNode(t *testing.T) {
	d := pgtest.DSN(t)
	db, err := sql.Open("pgx", d)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.NewerNode(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, db)
}

// Standing, on every first CONNECT of the broker, finds the grant, the
// thing and the user each by its primary key: three index scans, no
// sequential scan.
func TestStandingPlan(t *testing.T) {
	st, _ := open(t)
	plan := storetest.StandingPlan(t, st)
	for _, index := range []string{"oauth_grants_pkey on oauth_grants g", "things_pkey on things x", "users_pkey on users u"} {
		if !strings.Contains(plan, "Index Scan using "+index) {
			t.Errorf("the plan has no index scan using %s:\n%s", index, plan)
		}
	}
	t.Logf("plan:\n%s", plan)
	if strings.Contains(plan, "Seq Scan") {
		t.Errorf("the plan scans a table:\n%s", plan)
	}
}
