package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An unknown subcommand fails with a non-zero exit at every level, naming
// the closest command; a group without arguments still shows its help.
func TestUnknownSubcommands(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "thingid"`},
		{[]string{"users", "frob"}, `unknown command "frob" for "thingid users"`},
		{[]string{"users", "creat"}, `did you mean "create"?`},
		{[]string{"factory", "isue"}, `unknown command "isue" for "thingid factory"`},
	} {
		out, err := execRoot(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (output %q), want an error with %q", c.args, err, out, c.want)
		}
	}
	if out, err := execRoot("users"); err != nil || !strings.Contains(out, "Available Commands") {
		t.Errorf("thingid users: %v %q", err, out)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := execRoot(args...)
		if err != nil || !strings.HasPrefix(out, "thingid ") || !strings.Contains(out, "go1.") {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
}

func execRoot(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// A wrong header row is reported as such: nothing imported, no line to
// resume from.
func TestImportBadHeader(t *testing.T) {
	home := t.TempDir()
	file := filepath.Join(t.TempDir(), "devices.csv")
	if err := os.WriteFile(file, []byte("serial,colour\nSN-1,red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, home, newDevices, "import", file, "--manufacturer", "Acme", "--model", "S1")
	if err == nil || !strings.Contains(err.Error(), `unknown column "colour"`) || !strings.Contains(err.Error(), "nothing was imported: fix the header row") ||
		strings.Contains(err.Error(), "resume") || strings.Contains(out, "rows in") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// A --home that does not exist is refused without --init (a typo must not
// start an empty platform), and created with it.
func TestHomeMustExistOrInit(t *testing.T) {
	home := filepath.Join(t.TempDir(), "thingd-data")
	out, err := run(t, home, newUsers, "list")
	if err == nil || !strings.Contains(err.Error(), "--init") {
		t.Fatalf("users list on a missing --home: %v\n%s", err, out)
	}
	if _, err := os.Stat(home); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused command created %s: %v", home, err)
	}
	if out, err := runGlobals(t, &globals{home: home, init: true}, newUsers, "list"); err != nil {
		t.Fatalf("users list --init: %v\n%s", err, out)
	}
	if _, err := os.Stat(home); err != nil {
		t.Fatalf("--init did not create %s: %v", home, err)
	}
	// Now it exists: no --init needed.
	if out, err := run(t, home, newUsers, "list"); err != nil {
		t.Fatalf("users list on the new home: %v\n%s", err, out)
	}
}
