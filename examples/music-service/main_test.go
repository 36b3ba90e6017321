package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParsePlaylist(t *testing.T) {
	p, err := parsePlaylist("bob:Road trip:Born to Run,Roadrunner")
	if err != nil || p.owner != "bob" || p.name != "Road trip" || !slices.Equal(p.tracks, []string{"Born to Run", "Roadrunner"}) {
		t.Fatalf("%+v %v", p, err)
	}
	for _, in := range []string{"", "bob", "bob:Road trip", ":Road trip:a", "bob::a", "bob:Road trip:", "bob:Road trip:a,,b", "bob:Road trip:a, b"} {
		if p, err := parsePlaylist(in); err == nil {
			t.Errorf("%q accepted as %+v", in, p)
		}
	}
}

func FuzzParsePlaylist(f *testing.F) {
	for _, s := range []string{"bob:Road trip:Born to Run,Roadrunner", "a:b:c", "::", "a:b:c:d", "a:\x00:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePlaylist(s)
		if err != nil {
			return
		}
		if strings.Contains(p.owner, ":") || p.name == "" || len(p.tracks) == 0 || slices.Contains(p.tracks, "") {
			t.Errorf("%q accepted as %+v", s, p)
		}
	})
}
