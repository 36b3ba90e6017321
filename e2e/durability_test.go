package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/thingid/thingid/internal/store/postgres/pgtest"
)

// Writers create users through SCIM as fast as they can while the server is
// killed with SIGKILL; every create the server acknowledged (201 with an id)
// must be there after a restart, on both stores. A 201 is a promise: SQLite
// commits with synchronous=FULL and PostgreSQL with its WAL before answering.
func TestKillDuringConcurrentSCIMWritesLosesNothing(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { killDuringWrites(t) })
	t.Run("postgres", func(t *testing.T) {
		killDuringWrites(t, "THINGID_STORAGE_TYPE=postgres", "THINGID_STORAGE_POSTGRES_DSN="+pgtest.DSN(t))
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
