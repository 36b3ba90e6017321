package main

import (
	"bytes"
	"context"
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
