package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// openHome opens the platform of a data directory as `serve` would, for a
// test to change it beside the commands.
func openHome(t *testing.T, home string) *server.Platform {
	t.Helper()
	cfg := config.Default()
	cfg.Home = home
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func appendAudit(t *testing.T, p *server.Platform, recs ...store.AuditRecord) {
	t.Helper()
	if err := p.Store.AppendAudit(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

func TestAuditCommand(t *testing.T) {
	home := t.TempDir()
	p := openHome(t, home)
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	thing := store.Ref{Kind: store.KindThing, ID: "th-1"}
	appendAudit(t, p,
		store.AuditRecord{Time: at, Actor: "admin:a1", Action: "uma.share.create", Target: thing, Detail: json.RawMessage(`{"with":"bob"}`)},
		store.AuditRecord{Time: at.Add(time.Minute), Actor: "cli", Action: "thing.disable", Target: thing},
		store.AuditRecord{Time: at.Add(2 * time.Minute), Actor: "cli", Action: "uma.rpt.issue"},
		store.AuditRecord{Time: at.Add(3 * time.Minute), Actor: "mqtt:\x1b[2J\x1b]0;pwned\a", Action: "thing.update\u202eevil", Target: thing},
	)

	out, err := run(t, home, newAudit, "--action", "uma.*")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") ||
		!strings.Contains(lines[1], "2025-06-01T12:00:00Z") || !strings.Contains(lines[1], "thing:th-1") || !strings.Contains(lines[1], `{"with":"bob"}`) ||
		!strings.Contains(lines[2], "uma.rpt.issue") {
		t.Fatalf("uma.*, oldest of the last first: %v\n%s", err, out)
	}
	// Escape sequences an actor or action carries reach the terminal escaped.
	out, err = run(t, home, newAudit, "--subject", "th-1", "--subject-kind", "thing", "--limit", "1")
	if err != nil || strings.ContainsAny(out, "\x1b\a\u202e") || !strings.Contains(out, `"mqtt:\x1b[2J\x1b]0;pwned\a"`) ||
		!strings.Contains(out, "The last 1 matching records") {
		t.Fatalf("hostile actor: %v\n%q", err, out)
	}
	out, err = run(t, home, newAudit, "--actor", "cli", "--json", "--limit", "0", "--since", "2025-06-01T12:01:00Z", "--until", "2025-06-01T12:03:00Z")
	var recs []audit.Record
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		recs = append(recs, r)
	}
	if err != nil || len(recs) != 2 || recs[0].Action != "thing.disable" || recs[1].Action != "uma.rpt.issue" || recs[1].Subject != nil {
		t.Fatalf("--json --limit 0: %v\n%s", err, out)
	}
	if out, err := run(t, home, newAudit, "--since", "1h", "--action", "uma.*"); err != nil || !strings.Contains(out, "No audit record matches") {
		t.Fatalf("--since 1h: %v %s", err, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, "--since: "},
		{[]string{"--since", "-1h"}, "--since -1h: a duration counts back from now"},
		{[]string{"--action", "uma.*.x"}, "--action: a * may only end the value"},
		{[]string{"--subject-kind", "thing"}, "--subject-kind: narrows subject"},
		{[]string{"--since", "1h", "--until", "2h"}, "--until: must be later than since"},
		{[]string{"--limit", "1001"}, "--limit 1001: want 1 to 1000 records, or 0 for every match"},
		{[]string{"--follow", "--until", "1h"}, "leave out one of them"},
		{[]string{"--follow", "--interval", "0s"}, "--interval 0s"},
	} {
		if out, err := run(t, home, newAudit, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v %s, want an error with %q", c.args, err, out, c.want)
		}
	}
}

// syncBuffer is an output a command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until out holds want, failing after a generous bound.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(out.String(), want) {
			return
		}
	}
	t.Fatalf("no %q in the output:\n%s", want, out.String())
}

// --follow prints what another process appends, matching records only,
// each once, until its context ends (Ctrl-C), which is no error.
func TestAuditFollow(t *testing.T) {
	home := t.TempDir()
	p := openHome(t, home)
	appendAudit(t, p, store.AuditRecord{Actor: "cli", Action: "user.create", Target: store.Ref{Kind: store.KindUser, ID: "before"}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newAudit(&globals{home: home})
	var out, errOut syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"--action", "user.*", "--follow", "--interval", "20ms", "--json"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitFor(t, &out, `"before"`)
	waitFor(t, &errOut, "Ctrl-C stops")

	appendAudit(t, p, store.AuditRecord{Actor: "cli", Action: "thing.create", Target: store.Ref{Kind: store.KindThing, ID: "not-a-user"}})
	for i := range 1500 { // more than one page of a poll
		appendAudit(t, p, store.AuditRecord{Actor: "cli", Action: "user.update", Target: store.Ref{Kind: store.KindUser, ID: "u" + strings.Repeat("x", i%3) + string(rune('a'+i%26))}})
	}
	appendAudit(t, p, store.AuditRecord{Actor: "cli", Action: "user.delete", Target: store.Ref{Kind: store.KindUser, ID: "after"}})
	waitFor(t, &out, `"after"`)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}
	text := out.String()
	if strings.Contains(text, "not-a-user") || strings.Count(text, `"user.update"`) != 1500 || strings.Count(text, `"before"`) != 1 {
		t.Fatalf("followed %d updates, other records: %v", strings.Count(text, `"user.update"`), strings.Contains(text, "not-a-user"))
	}
}
