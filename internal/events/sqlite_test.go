package events

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store/sqlite"
)

// openLog opens the SQLite database at path as one more process would.
func openLog(t *testing.T, path string) EventLog {
	t.Helper()
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(EventLog)
}

func startLogRelay(t *testing.T, b *Bus, log EventLog) *Relay {
	t.Helper()
	r, err := StartLogRelay(t.Context(), b, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// TestLogRelayCarriesEventsBetweenProcesses: two "processes" on one SQLite
// file, each with its own store, bus and relay: an event published on one
// reaches the other once, and is not delivered twice where it was published.
func TestLogRelayCarriesEventsBetweenProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	a, b := New(), New()
	ra, rb := record(a, "lr-"), record(b, "lr-")
	startLogRelay(t, a, openLog(t, path))
	startLogRelay(t, b, openLog(t, path))

	a.Publish(Event{Type: "thing.disable", Kind: "thing", ID: "lr-t1", Actor: "admin", Details: map[string]string{"why": "stolen"}})
	got := rb.await(t, "lr-t1", patience)
	if got.Type != "thing.disable" || got.Kind != "thing" || got.Actor != "admin" || got.Details["why"] != "stolen" || got.Time.IsZero() {
		t.Fatalf("delivered %+v", got)
	}
	b.Publish(Event{Type: "grant.revoke", ID: "lr-g1"})
	ra.await(t, "lr-g1", patience)

	// A local event stays in its process; give it and a duplicate time to
	// show up, then count.
	b.Publish(Event{Type: "thing.create", ID: "lr-local", Local: true})
	b.Publish(Event{Type: "grant.revoke", ID: "lr-fence"})
	ra.await(t, "lr-fence", patience)
	if n := ra.count("thing.disable:lr-t1"); n != 1 {
		t.Errorf("the publishing process saw its own event %d times, want 1", n)
	}
	if n := rb.count("thing.disable:lr-t1"); n != 1 {
		t.Errorf("the other process saw the event %d times, want 1", n)
	}
	if n := ra.count("thing.create:lr-local"); n != 0 {
		t.Errorf("a local event reached another process %d times", n)
	}
	if n := rb.count("thing.create:lr-local"); n != 1 {
		t.Errorf("a local event reached its own process %d times, want 1", n)
	}
	if n := rb.count("grant.revoke:lr-g1"); n != 1 {
		t.Errorf("the publishing process saw its own event %d times, want 1", n)
	}
}

// TestLogRelayCLICommand is a CLI command's life: open, publish, close at
// once. Close must have appended the event, and the running server's relay
// delivers it; a relay started later does not replay it.
func TestLogRelayCLICommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	server := New()
	rs := record(server, "cli-")
	startLogRelay(t, server, openLog(t, path))

	cli := New()
	r, err := StartLogRelay(context.Background(), cli, openLog(t, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	cli.Publish(Event{Type: "cert.revoke", Kind: "thing", ID: "cli-c1"})
	r.Close()
	rs.await(t, "cli-c1", patience)

	late := New()
	rl := record(late, "cli-")
	startLogRelay(t, late, openLog(t, path))
	server.Publish(Event{Type: "grant.revoke", ID: "cli-fence"})
	rl.await(t, "cli-fence", patience)
	if n := rl.count("cert.revoke:cli-c1"); n != 0 {
		t.Errorf("a relay started later replayed an old event %d times", n)
	}
}

// TestLogRelayBurst: a bulk change publishes many events at once; what the
// queue holds arrives, in batches, in order.
func TestLogRelayBurst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	a, b := New(), New()
	var got atomic.Int64
	var last atomic.Int64
	ordered := atomic.Bool{}
	ordered.Store(true)
	b.Subscribe(func(e Event) {
		if !strings.HasPrefix(e.ID, "burst-") {
			return
		}
		var n int64
		fmt.Sscanf(e.ID, "burst-%d", &n)
		if n <= last.Swap(n) {
			ordered.Store(false)
		}
		got.Add(1)
	})
	startLogRelay(t, b, openLog(t, path))
	ra := startLogRelay(t, a, openLog(t, path))
	const n = queueSize // what the queue is sure to hold
	for i := 1; i <= n; i++ {
		a.Publish(Event{Type: "thing.create", Kind: "thing", ID: fmt.Sprintf("burst-%d", i)})
	}
	ra.Close()
	for deadline := time.Now().Add(patience); got.Load() < n && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if got.Load() != n || !ordered.Load() {
		t.Fatalf("%d of %d events delivered, in order: %v", got.Load(), n, ordered.Load())
	}
}

// TestLogRelayIgnoresMalformedPayloads: a row that is not a relay payload
// (written by hand, or by a future version) is skipped, and what follows is
// still delivered.
func TestLogRelayIgnoresMalformedPayloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	b := New()
	rb := record(b, "mal-")
	logs := &logBuffer{}
	r, err := StartLogRelay(t.Context(), b, openLog(t, path), logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	writer := openLog(t, path)
	if err := writer.AppendEvents(t.Context(), [][]byte{[]byte(`{"not json`), []byte(`{"type":"grant.revoke","id":"mal-1"}`)}); err != nil {
		t.Fatal(err)
	}
	p, err := encode("another-node", Event{Type: "grant.revoke", ID: "mal-ok", Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.AppendEvents(t.Context(), [][]byte{p}); err != nil {
		t.Fatal(err)
	}
	rb.await(t, "mal-ok", patience)
	if rb.count("grant.revoke:mal-1") != 0 {
		t.Error("a payload without a node was delivered")
	}
	if !strings.Contains(logs.String(), "malformed") {
		t.Errorf("nothing logged about the malformed payloads:\n%s", logs.String())
	}
}

// TestLogRelayFlushesWhenItsContextEnds: a CLI command interrupted (its
// context cancelled, as on Ctrl-C) right after its changes committed still
// sends the events it published.
func TestLogRelayFlushesWhenItsContextEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	server := New()
	var got atomic.Int64
	server.Subscribe(func(e Event) {
		if strings.HasPrefix(e.ID, "int-") {
			got.Add(1)
		}
	})
	startLogRelay(t, server, openLog(t, path))

	ctx, cancel := context.WithCancel(context.Background())
	cli := New()
	r, err := StartLogRelay(ctx, cli, openLog(t, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		cli.Publish(Event{Type: "thing.disable", Kind: "thing", ID: fmt.Sprintf("int-%d", i)})
	}
	cancel()
	r.Close()
	for deadline := time.Now().Add(patience); got.Load() < n && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if got.Load() != n {
		t.Fatalf("%d of %d events published before the context ended reached the server", got.Load(), n)
	}
}

// FuzzDeliver: whatever a row of the event log holds, deliver publishes at
// most one event, never one of this node's, and does not panic.
func FuzzDeliver(f *testing.F) {
	good, _ := encode("other-node", Event{Type: "grant.revoke", ID: "g1", Time: time.Now()})
	f.Add(string(good))
	f.Add(`{"node":"me","type":"x"}`)
	f.Add(`{"node":"","type":"x"}`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, payload string) {
		b := New()
		r := newRelay(b, nil)
		r.node = "me"
		n := 0
		b.Subscribe(func(Event) { n++ })
		r.deliver(payload)
		if n > 1 {
			t.Fatalf("%d events from one payload", n)
		}
		var w wire
		if json.Unmarshal([]byte(payload), &w) == nil && w.Node == "me" && n != 0 {
			t.Fatal("this node's own event was delivered again")
		}
	})
}
