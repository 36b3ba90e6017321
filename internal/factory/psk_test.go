package factory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
)

// checkPSKs: every device of the manifest has its key's files, and the key
// in them is the one the store opens for its identity.
func checkPSKs(t *testing.T, e *env, out string) map[string]psk.Issued {
	t.Helper()
	keys := psk.NewKeys(e.st, e.master)
	got := map[string]psk.Issued{}
	for _, row := range readManifest(t, out) {
		dir := filepath.Join(out, row[1])
		id, err1 := os.ReadFile(filepath.Join(dir, PSKIdentityFile))
		key, err2 := os.ReadFile(filepath.Join(dir, PSKKeyFile))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, PSKKeyFile)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file mode %v", row[1], fi.Mode())
		}
		in := psk.Issued{Identity: strings.TrimSpace(string(id)), Key: strings.TrimSpace(string(key))}
		th, clear, err := keys.Key(context.Background(), []byte(in.Identity))
		if err != nil || th.ID != row[0] || string(clear) != in.Key {
			t.Fatalf("%s: identity %q: thing %v, key matches %v, %v", row[1], in.Identity, th, string(clear) == in.Key, err)
		}
		got[row[0]] = in
	}
	return got
}

func TestIssueWithPSKs(t *testing.T) {
	e := newEnv(t)
	out := t.TempDir()
	opts := Options{Model: "TH", Count: 6, Out: out, BatchSize: 4, PSK: true, MasterKey: e.master, Actor: "test"}
	sum, err := Issue(context.Background(), e.ids, e.ca, opts)
	if err != nil || sum.Issued != 6 {
		t.Fatalf("%+v %v", sum, err)
	}
	checkOut(t, e, out, 6, true)
	first := checkPSKs(t, e, out)

	// Killed after the commit and before the manifest lines: recovered
	// devices keep the keys their files hold; one whose key files are gone
	// gets a new key.
	b, _ := os.ReadFile(filepath.Join(out, ManifestFile))
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(filepath.Join(out, ManifestFile), []byte(strings.Join(lines[:3], "")), 0o644)
	lost := filepath.Join(out, "TH-000006")
	os.Remove(filepath.Join(lost, PSKKeyFile))
	sum, err = Issue(context.Background(), e.ids, e.ca, opts)
	if err != nil || sum.Recovered != 4 || sum.Skipped != 2 {
		t.Fatalf("recovery: %+v %v", sum, err)
	}
	again := checkPSKs(t, e, out)
	changed := 0
	for id, in := range again {
		if in != first[id] {
			changed++
		}
	}
	if changed != 1 {
		t.Fatalf("%d keys changed in the recovery, want 1 (the device whose key file was gone)", changed)
	}
}

func TestIssuePSKReplaces(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	th, err := e.ids.CreateThing(ctx, "test", &store.Thing{SerialNumber: "C-1"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := IssuePSK(ctx, e.ids, e.master, "test", th.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := IssuePSK(ctx, e.ids, e.master, "test", th.ID)
	if err != nil || cur.Identity == old.Identity || cur.Key == old.Key {
		t.Fatalf("re-issue: %+v %v", cur, err)
	}
	keys := psk.NewKeys(e.st, e.master)
	if _, _, err := keys.Key(ctx, []byte(old.Identity)); !errors.Is(err, psk.ErrRefused) {
		t.Fatalf("the replaced key: %v", err)
	}
	if _, key, err := keys.Key(ctx, []byte(cur.Identity)); err != nil || string(key) != cur.Key {
		t.Fatalf("the new key: %v", err)
	}
	if _, err := IssuePSK(ctx, e.ids, e.master, "test", "no-such-thing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a missing thing: %v", err)
	}
}

func TestIssuePSKNeedsMasterKey(t *testing.T) {
	e := newEnv(t)
	_, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "TH", Count: 1, Out: t.TempDir(), PSK: true, MasterKey: secrets.Key{}})
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("%v", err)
	}
}
