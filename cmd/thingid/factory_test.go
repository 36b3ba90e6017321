package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/server"
)

// factory issue --psk writes each device's key beside its certificate, and
// factory psk prints a new key once, which replaces the old one in the
// store: the old identity is refused, the new one opens.
func TestFactoryPSKCommands(t *testing.T) {
	home, out := t.TempDir(), filepath.Join(t.TempDir(), "batch")
	if msg, err := run(t, home, newFactory, "issue", "--model", "TH", "--count", "2", "--psk", "--out", out); err != nil {
		t.Fatalf("factory issue --psk: %v\n%s", err, msg)
	}
	idFile := filepath.Join(out, "TH-000001", "psk.identity")
	oldID, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	thing, _, _ := strings.Cut(string(oldID), ".")

	msg, err := run(t, home, newFactory, "psk", "--thing", thing)
	m := regexp.MustCompile(`(?m)^identity (\S+)\nkey (\S+)\n$`).FindStringSubmatch(msg)
	if err != nil || m == nil {
		t.Fatalf("factory psk: %v\n%q", err, msg)
	}
	if _, err := run(t, home, newFactory, "psk"); err == nil || !strings.Contains(err.Error(), "--thing") {
		t.Errorf("without --thing: %v", err)
	}
	if _, err := run(t, home, newFactory, "psk", "--thing", "no-such-thing"); err == nil || !strings.Contains(err.Error(), "no-such-thing") {
		t.Errorf("an unknown thing: %v", err)
	}

	cfg := config.Default()
	cfg.Home = home
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	keys := psk.NewKeys(p.Store, p.Key)
	if _, _, err := keys.Key(context.Background(), []byte(strings.TrimSpace(string(oldID)))); !errors.Is(err, psk.ErrRefused) {
		t.Errorf("the replaced identity: %v", err)
	}
	th, key, err := keys.Key(context.Background(), []byte(m[1]))
	if err != nil || th.ID != thing || string(key) != m[2] {
		t.Fatalf("the printed key: %v", err)
	}
	row, err := p.Store.GetThingPSK(context.Background(), thing)
	if err != nil || strings.Contains(string(row.Sealed), m[2]) {
		t.Fatalf("the stored key is not sealed: %v", err)
	}
}
