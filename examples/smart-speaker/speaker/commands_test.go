package speaker

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		want          command
		err           string
	}{
		{"volume", "55", command{name: "volume", volume: 55}, ""},
		{"volume", " 0\n", command{name: "volume"}, ""},
		{"volume", "100", command{name: "volume", volume: 100}, ""},
		{"volume", "101", command{}, "0 to 100"},
		{"volume", "-1", command{}, "0 to 100"},
		{"volume", "loud", command{}, "0 to 100"},
		{"volume", "", command{}, "0 to 100"},
		{"play", "Blue in Green", command{name: "play", track: "Blue in Green"}, ""},
		{"play", "", command{}, "track name"},
		{"play", "a\x00b", command{}, "track name"},
		{"play", "\xff", command{}, "track name"},
		{"play", strings.Repeat("a", maxTrack+1), command{}, "track name"},
		{"pause", "", command{name: "pause"}, ""},
		{"stop", "now", command{}, "no argument"},
		{"reboot", "", command{}, "unknown command"},
		{"volume/extra", "1", command{}, "unknown command"},
	} {
		got, err := parseCommand(tc.name, []byte(tc.payload))
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s %q: %+v %v, want %+v", tc.name, tc.payload, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s %q: error %v, want one with %q", tc.name, tc.payload, err, tc.err)
		}
	}
}

func TestPlayer(t *testing.T) {
	p := newPlayer()
	steps := []struct {
		c    command
		line string
	}{
		{command{name: "pause"}, "■ stopped · volume 30"},
		{command{name: "play", track: "So What"}, "▶ So What · volume 30"},
		{command{name: "volume", volume: 70}, "▶ So What · volume 70"},
		{command{name: "pause"}, "Ⅱ So What · volume 70"},
		{command{name: "stop"}, "■ stopped · volume 70"},
	}
	for _, s := range steps {
		if got := p.apply(s.c); got != s.line {
			t.Errorf("after %+v: %q, want %q", s.c, got, s.line)
		}
	}
	if got := string((telemetry{Seq: 3, player: p}).payload()); got != `{"seq":3,"uptime_s":0,"commands":0,"volume":70,"state":"stopped"}` {
		t.Errorf("telemetry %s", got)
	}
}

// Whatever a sender publishes, the parser answers without panicking, and
// what it accepts is displayable and within range.
func FuzzParseCommand(f *testing.F) {
	for _, s := range [][2]string{{"volume", "55"}, {"play", "x"}, {"stop", ""}, {"volume", "1e3"}, {"play", "\u202e"}, {"x", "y"}} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		c, err := parseCommand(name, payload)
		if err != nil {
			if !utf8.ValidString(err.Error()) {
				t.Errorf("error message is not UTF-8: %q", err)
			}
			return
		}
		if c.volume < 0 || c.volume > 100 || len(c.track) > maxTrack || !utf8.ValidString(c.track) {
			t.Errorf("accepted %+v", c)
		}
	})
}
