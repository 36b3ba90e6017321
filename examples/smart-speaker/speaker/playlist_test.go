package speaker

import (
	"strings"
	"testing"
)

func TestParsePlaylist(t *testing.T) {
	p, err := parsePlaylist([]byte(`{"id":"r1","name":"Road trip","owner":"bob","tracks":["Born to Run","Roadrunner"]}`))
	if err != nil || p.Name != "Road trip" || p.Owner != "bob" || len(p.Tracks) != 2 {
		t.Fatalf("%+v %v", p, err)
	}
	for _, body := range []string{
		``, `[]`, `{"name":"Road trip"}`, `{"name":"","tracks":["a"]}`, `{"name":"x","tracks":[]}`,
		`{"name":"x","tracks":[""]}`, `{"name":"x","tracks":["a\u0007"]}`, `{"name":"x","tracks":["` + strings.Repeat("a", maxTrack+1) + `"]}`,
	} {
		if p, err := parsePlaylist([]byte(body)); err == nil {
			t.Errorf("%s accepted as %+v", body, p)
		}
	}
}

// Whatever a service answers, the speaker plays only tracks its player can.
func FuzzParsePlaylist(f *testing.F) {
	f.Add([]byte(`{"name":"Road trip","tracks":["Born to Run"]}`))
	f.Add([]byte(`{"name":"x","tracks":[null]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parsePlaylist(body)
		if err != nil {
			return
		}
		for _, tr := range p.Tracks {
			if _, err := parseCommand("play", []byte(tr)); err != nil {
				t.Errorf("%q accepted with track %q: %v", body, tr, err)
			}
		}
	})
}
