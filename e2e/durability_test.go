package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Writers create users through SCIM as fast as they can while the server is
// killed with SIGKILL; every create the server acknowledged (201 with an id)
// must be there after a restart, on both stores. A 201 is a promise: SQLite
// commits with synchronous=FULL and PostgreSQL with its WAL before answering.
func TestKillDuringConcurrentSCIMWritesLosesNothing(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killDuringWrites(t) })
	t.Run("postgres", func(t *testing.T) {
		killDuringWrites(t, "THINGID_STORAGE_TYPE=postgres", "THINGID_STORAGE_POSTGRES_DSN="+postgresSchema(t))
	})
}

func killDuringWrites(t *testing.T, env ...string) {
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr, env...)
	password := in.adminPassword(t)

	const writers = 8
	var (
		mu    sync.Mutex
		acked []string // ids of creates answered 201
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 10_000; i++ {
				id, ok := createUser(ctx, in, password, fmt.Sprintf("w%d-u%05d", w, i))
				if !ok {
					return // the server is gone
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	// Kill once enough writes are acknowledged, while the writers are still busy.
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := in.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	in.cmd.Wait()
	stop()
	wg.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d creates acknowledged before the kill; log:\n%s", len(acked), in.out)
	}

	again := start(t, home, addr, env...)
	lost := 0
	for _, id := range acked {
		if code, _ := again.scim(t, "GET", "/Users/"+id, nil); code != http.StatusOK {
			lost++
			if lost <= 5 {
				t.Errorf("user %s acknowledged before SIGKILL, then %d after restart", id, code)
			}
		}
	}
	t.Logf("%d acknowledged creates by %d concurrent writers, %d lost after SIGKILL", len(acked), writers, lost)
}

// createUser posts one SCIM user and reports its id if the server answered 201.
func createUser(ctx context.Context, in *instance, password, name string) (string, bool) {
	body, _ := json.Marshal(map[string]any{"schemas": []string{userSchema}, "userName": name})
	req, _ := http.NewRequestWithContext(ctx, "POST", in.url("/scim/v2/Users"), bytes.NewReader(body))
	req.SetBasicAuth("admin", password)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := in.client.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return "", false
	}
	var out struct{ ID string }
	if json.Unmarshal(raw, &out) != nil || out.ID == "" {
		return "", false
	}
	return out.ID, true
}

// postgresSchema creates an empty schema on the test PostgreSQL, dropped when
// the test ends, and returns a DSN whose search_path selects it.
func postgresSchema(t *testing.T) string {
	t.Helper()
	base := os.Getenv("THINGID_TEST_POSTGRES_DSN")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THINGID_TEST_POSTGRES_DSN is not set; CI must run the PostgreSQL tests (scripts/start-postgres.sh)")
		}
		t.Skip("THINGID_TEST_POSTGRES_DSN not set: run export THINGID_TEST_POSTGRES_DSN=$(scripts/start-postgres.sh) to test PostgreSQL")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("THINGID_TEST_POSTGRES_DSN must be a postgres:// URL: %q", base)
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	name := "e2e_" + strings.ToLower(rand.Text()[:12])
	if _, err := db.Exec("CREATE SCHEMA " + name); err != nil { // the name is generated here
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + name + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
		db.Close()
	})
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}
