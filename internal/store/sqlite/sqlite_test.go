package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/store/storetest"
)

func open(t testing.TB) (store.Store, string) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
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

func TestFileIsPrivate(t *testing.T) {
	_, path := open(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestAuditIsAppendOnly goes around the store: even raw SQL cannot change or
// delete an audit record.
func TestAuditIsAppendOnly(t *testing.T) {
	s, path := open(t)
	if err := s.AppendAudit(t.Context(), store.AuditRecord{Actor: "system", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only trigger to refuse", q, err)
		}
	}
	recs, err := s.ListAudit(t.Context(), store.AuditQuery{})
	if err != nil || len(recs) != 1 || recs[0].Actor != "system" {
		t.Fatalf("audit changed: %+v %v", recs, err)
	}
}

// TestConcurrentOpen opens one file from several "processes" (separate pools)
// at once: migrations run exactly once and nobody fails.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := sqlite.Open(path)
			if err == nil {
				err = s.CreateUser(context.Background(), &store.User{UserName: fmt.Sprint("u", len(errs))})
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !strings.Contains(err.Error(), "conflict") {
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

// BenchmarkThingPage: a directory search's page of one device and its
// owner, in two statements or in one (docs/performance.md).
func BenchmarkThingPage(b *testing.B) {
	s, _ := open(b)
	storetest.BenchmarkThingPage(b, s, 20_000)
}

func TestPKIConformance(t *testing.T) {
	storetest.PKI(t, func(t *testing.T) store.Store { s, _ := open(t); return s })
}

// TestDataVersion: the number changes with every commit, whoever makes it —
// this store, another store on the same file (another process, such as the
// CLI) or plain SQL — and only then. Caches of the token endpoint rely on it.
func TestDataVersion(t *testing.T) {
	s, path := open(t)
	dv := s.(interface {
		DataVersion(context.Context) (uint64, error)
	})
	ctx := t.Context()
	version := func() uint64 {
		t.Helper()
		v, err := dv.DataVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := version()
	if _, err := s.ListGrants(ctx, store.GrantFilter{}); err != nil {
		t.Fatal(err)
	}
	if got := version(); got != v {
		t.Fatalf("a read changed the data version: %d → %d", v, got)
	}

	other, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	writes := []struct {
		name  string
		write func() error
	}{
		{"this store", func() error {
			return s.AppendAudit(ctx, store.AuditRecord{Actor: "system", Action: "user.create"})
		}},
		{"another store on the file", func() error {
			return other.AppendAudit(ctx, store.AuditRecord{Actor: "system", Action: "user.create"})
		}},
		{"plain SQL", func() error {
			_, err := db.ExecContext(ctx, "CREATE TABLE scratch (x INTEGER)")
			return err
		}},
	}
	for _, w := range writes {
		if err := w.write(); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		got := version()
		if got == v {
			t.Fatalf("a commit by %s left the data version at %d", w.name, v)
		}
		v = got
	}
}

// TestEventLog: appended events come back in order after a sequence number;
// the newest number survives their purge, so a relay started after it does
// not read old events again.
func TestEventLog(t *testing.T) {
	s, _ := open(t)
	ctx := t.Context()
	type eventLog interface {
		AppendEvents(context.Context, [][]byte) error
		EventsAfter(context.Context, int64, int) ([]store.EventRecord, error)
		LastEventSeq(context.Context) (int64, error)
	}
	el := s.(eventLog)
	if seq, err := el.LastEventSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("empty log: %d %v", seq, err)
	}
	if err := el.AppendEvents(ctx, [][]byte{[]byte("a"), []byte("b"), []byte("c")}); err != nil {
		t.Fatal(err)
	}
	got, err := el.EventsAfter(ctx, 0, 2)
	if err != nil || len(got) != 2 || string(got[0].Payload) != "a" || string(got[1].Payload) != "b" || got[0].Seq >= got[1].Seq {
		t.Fatalf("first two: %+v %v", got, err)
	}
	if rest, err := el.EventsAfter(ctx, got[1].Seq, 10); err != nil || len(rest) != 1 || string(rest[0].Payload) != "c" {
		t.Fatalf("rest: %+v %v", rest, err)
	}
	last, _ := el.LastEventSeq(ctx)
	if _, err := s.PurgeExpired(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if left, err := el.EventsAfter(ctx, 0, 10); err != nil || len(left) != 0 {
		t.Fatalf("after the purge: %+v %v", left, err)
	}
	if seq, err := el.LastEventSeq(ctx); err != nil || seq != last {
		t.Fatalf("newest sequence number after the purge: %d, want %d (%v)", seq, last, err)
	}
	if err := el.AppendEvents(ctx, [][]byte{[]byte("d")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := el.EventsAfter(ctx, last, 10); len(got) != 1 || got[0].Seq <= last {
		t.Fatalf("a new event after the purge: %+v", got)
	}
}

// TestDataVersionUnderConcurrency: callers share checks, but one that asks
// after a commit returned never gets a number from before it, however many
// others are asking at the same time.
func TestDataVersionUnderConcurrency(t *testing.T) {
	s, path := open(t)
	dv := s.(interface {
		DataVersion(context.Context) (uint64, error)
	})
	other, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := t.Context()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 { // keep checks in flight all the time
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := dv.DataVersion(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 200 {
		before, err := dv.DataVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.AppendAudit(ctx, store.AuditRecord{Actor: "system", Action: "user.create"}); err != nil {
			t.Fatal(err)
		}
		var check sync.WaitGroup
		for range 4 {
			check.Go(func() {
				if after, err := dv.DataVersion(ctx); err != nil || after == before {
					t.Errorf("round %d: after a commit the data version is still %d (%v)", i, after, err)
				}
			})
		}
		check.Wait()
	}
	close(stop)
	wg.Wait()
}

// TestInvitationsUpgrade takes a database back to migration 0012's
// invitations and opens it again: 0015 keeps the invitation.
func TestInvitationsUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	storetest.InvitationsUpgrade(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, func(t *testing.T, household, user string) {
		db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
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
				created      INTEGER NOT NULL,
				expires_at   INTEGER NOT NULL
			) WITHOUT ROWID`,
			"CREATE INDEX household_invitations_household ON household_invitations (household_id)",
			"CREATE INDEX household_invitations_invitee ON household_invitations (invitee_id)",
			fmt.Sprintf("INSERT INTO household_invitations VALUES ('inv-1', '%s', '%s', 'guest', 'someone', 1, %d)", household, user, time.Now().Add(time.Hour).UnixMicro()),
			"DELETE FROM schema_migrations WHERE version = 15",
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	})
}

// TestNewerNode: a node of the next version migrated the file and wrote
// through its schema; this version opens it, applies nothing and works.
func TestNewerNode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.NewerNode(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, db)
}

// An equality on the serial number alone, in id order as the directory's
// and SCIM's pages are, is one seek in things_serial_number that gives the
// matches in order: no skip-scan of another index, no sort.
func TestSerialLookupPlan(t *testing.T) {
	st, _ := open(t)
	ctx := context.Background()
	things := make([]*store.Thing, 50)
	for i := range things {
		things[i] = &store.Thing{Type: store.ThingDevice, Model: fmt.Sprintf("M%d", i%5), SerialNumber: fmt.Sprintf("SN-%05d", i), Status: store.StatusActive}
	}
	if _, err := st.CreateThings(ctx, things); err != nil {
		t.Fatal(err)
	}
	ex := st.(interface {
		ExplainThings(ctx context.Context, q store.Query) (count, page string, err error)
	})
	_, page, err := ex.ExplainThings(ctx, store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "SN-00007"},
		SortBy: "id", Limit: 2, NoTotal: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, "USING INDEX things_serial_number (serial_number=?)") || strings.Contains(page, "TEMP B-TREE") {
		t.Errorf("the page's plan is not one ordered seek in things_serial_number:\n%s", page)
	}
}

// Standing, on every first CONNECT of the broker, finds the grant, the
// thing and the user each by its primary key: three seeks, no scan of a table.
func TestStandingPlan(t *testing.T) {
	st, _ := open(t)
	plan := storetest.StandingPlan(t, st)
	for _, step := range []string{
		"SEARCH g USING INDEX sqlite_autoindex_oauth_grants_1 (id=?)",
		"SEARCH x USING INDEX sqlite_autoindex_things_1 (id=?)",
		"SEARCH u USING INDEX sqlite_autoindex_users_1 (id=?)",
	} {
		if !strings.Contains(plan, step) {
			t.Errorf("the plan has no %q:\n%s", step, plan)
		}
	}
	for _, line := range strings.Split(plan, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "SCAN") && line != "SCAN CONSTANT ROW" && line != "SCAN k" || strings.Contains(line, "TEMP B-TREE") {
			t.Errorf("the plan scans a table (%s):\n%s", line, plan)
		}
	}
}

// A snapshot taken while writers commit holds a prefix of their commits:
// every user the copy has was acknowledged, and every user acknowledged
// before the snapshot began is in it.
func TestSnapshotWhileWriting(t *testing.T) {
	s, _ := open(t)
	snap := s.(interface {
		Snapshot(context.Context, string) error
	})
	ctx := context.Background()
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%05d", w, i)
				if err := s.CreateUser(ctx, &store.User{UserName: name}); err != nil {
					t.Errorf("create %s: %v", name, err)
					return
				}
				mu.Lock()
				acked[name] = true
				mu.Unlock()
			}
		})
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	before := make([]string, 0, len(acked))
	for name := range acked {
		before = append(before, name)
	}
	mu.Unlock()
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := snap.Snapshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := snap.Snapshot(ctx, path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a snapshot into an existing file: %v", err)
	}

	c, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("the snapshot does not open as a store: %v", err)
	}
	defer c.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of the snapshot: %q %v", check, err)
	}
	rows, err := db.Query("SELECT user_name FROM users")
	if err != nil {
		t.Fatal(err)
	}
	inCopy := map[string]bool{}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		inCopy[name] = true
	}
	rows.Close()
	for _, name := range before {
		if !inCopy[name] {
			t.Errorf("%s, acknowledged before the snapshot, is not in it", name)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for name := range inCopy {
		if !acked[name] {
			t.Errorf("%s is in the snapshot but was never acknowledged", name)
		}
	}
	t.Logf("%d users acknowledged before the snapshot, %d in it, %d in all", len(before), len(inCopy), len(acked))
}
