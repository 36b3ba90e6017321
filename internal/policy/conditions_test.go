package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Conditions decide on the engine's clock in their own zone, with the
// household rules' windows and boundaries.
func TestConditions(t *testing.T) {
	loc := berlin(t)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04 Mon", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	schoolDays := When{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "07:00", End: "20:00"}
	fridayNight := When{Days: []string{"fri"}, Start: "22:00", End: "02:00"}
	untilSunday := When{FirstDate: "2025-03-20", LastDate: "2025-03-23"}
	tests := []struct {
		name    string
		when    When
		at      string
		allowed bool
		until   string // "" for none
	}{
		{"school day inside", schoolDays, "2025-03-17 19:59 Mon", true, "2025-03-17 20:00 Mon"},
		{"school day at the end", schoolDays, "2025-03-17 20:00 Mon", false, "2025-03-18 00:00 Tue"},
		{"school day a minute after", schoolDays, "2025-03-17 20:01 Mon", false, "2025-03-18 00:00 Tue"},
		{"school day at the start", schoolDays, "2025-03-18 07:00 Tue", true, "2025-03-18 20:00 Tue"},
		{"saturday", schoolDays, "2025-03-22 10:00 Sat", false, "2025-03-22 20:00 Sat"},
		{"friday evening", fridayNight, "2025-03-21 23:00 Fri", true, "2025-03-22 00:00 Sat"},
		{"across midnight", fridayNight, "2025-03-22 01:59 Sat", true, "2025-03-22 02:00 Sat"},
		{"across midnight, ended", fridayNight, "2025-03-22 02:00 Sat", false, "2025-03-22 22:00 Sat"},
		{"saturday evening is not friday", fridayNight, "2025-03-22 23:00 Sat", false, "2025-03-23 00:00 Sun"},
		{"before the first date", untilSunday, "2025-03-19 23:59 Wed", false, "2025-03-20 00:00 Thu"},
		{"on the last date", untilSunday, "2025-03-23 23:59 Sun", true, "2025-03-24 00:00 Mon"},
		{"after the last date", untilSunday, "2025-03-24 00:00 Mon", false, "2025-03-25 00:00 Tue"},
		{"always", When{}, "2025-03-24 00:00 Mon", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CompileConditions(tt.when, loc, "conditions")
			if err != nil {
				t.Fatal(err)
			}
			now := at(tt.at)
			d := NewEngine(func() time.Time { return now.UTC() }, nil).Within(c)
			if d.Allowed != tt.allowed {
				t.Errorf("allowed=%v, want %v (%s)", d.Allowed, tt.allowed, d.Reason)
			}
			want := time.Time{}
			if tt.until != "" {
				want = at(tt.until)
			}
			if !d.Until.Equal(want) {
				t.Errorf("until %v, want %v", d.Until.In(loc), want)
			}
			if !d.Local.Equal(now) || d.Local.Location() != loc {
				t.Errorf("decided on %v, want %v in the conditions' zone", d.Local, now)
			}
		})
	}
}

// The share's reason names the window as its owner wrote it, and the zone.
func TestConditionsReason(t *testing.T) {
	loc := berlin(t)
	c, err := CompileConditions(When{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "07:00", End: "20:00"}, loc, "conditions")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 17, 20, 1, 0, 0, loc)
	d := NewEngine(func() time.Time { return at }, nil).Within(c)
	if want := "outside the share's times: from 07:00 to 20:00 on school days (Europe/Berlin)"; d.Reason != want || d.Rule != "conditions" {
		t.Errorf("reason %q rule %q, want %q", d.Reason, d.Rule, want)
	}
	always, _ := CompileConditions(When{}, nil, "conditions")
	if always.Describe() != "always" {
		t.Errorf("no conditions read %q", always.Describe())
	}
}

// Daylight saving in Europe/Berlin, 2025: the clocks skip 02:00–03:00 on 30
// March and go back from 03:00 to 02:00 on 26 October. Windows follow the
// wall clock; Until stops at the change of offset.
func TestConditionsDaylightSaving(t *testing.T) {
	loc := berlin(t)
	tests := []struct {
		name       string
		start, end string
		utc        string
		allowed    bool
		until      string // UTC
	}{
		{"nonexistent start opens at the jump", "02:30", "03:30", "2025-03-30T01:00:00Z", true, "2025-03-30T01:30:00Z"},
		{"before the jump", "02:30", "03:30", "2025-03-30T00:59:00Z", false, "2025-03-30T01:00:00Z"},
		{"overnight window over the jump", "22:00", "07:00", "2025-03-30T04:59:00Z", true, "2025-03-30T05:00:00Z"},
		{"ambiguous hour, first pass", "02:00", "03:00", "2025-10-26T00:30:00Z", true, "2025-10-26T01:00:00Z"},
		{"ambiguous hour, second pass", "02:00", "03:00", "2025-10-26T01:30:00Z", true, "2025-10-26T02:00:00Z"},
		{"overnight window over the fall back", "20:00", "07:00", "2025-10-26T05:59:00Z", true, "2025-10-26T06:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CompileConditions(When{Start: tt.start, End: tt.end}, loc, "conditions")
			if err != nil {
				t.Fatal(err)
			}
			now, _ := time.Parse(time.RFC3339, tt.utc)
			d := NewEngine(func() time.Time { return now }, nil).Within(c)
			until, _ := time.Parse(time.RFC3339, tt.until)
			if d.Allowed != tt.allowed || !d.Until.Equal(until) {
				t.Errorf("at %s (%s): allowed=%v until=%v, want %v until %v", tt.utc, d.Local.Format("15:04 MST"), d.Allowed, d.Until.UTC(), tt.allowed, until)
			}
		})
	}
}

func TestConditionsRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		when  When
		field string
	}{
		{When{Days: []string{"mon", "funday"}}, "conditions.days[1]"},
		{When{Start: "07:00"}, "conditions.end"},
		{When{Start: "7am", End: "20:00"}, "conditions.start"},
		{When{Start: "07:00", End: "24:01"}, "conditions.end"},
		{When{Start: "07:00", End: "07:00"}, "conditions.end"},
		{When{LastDate: "2025-02-30"}, "conditions.lastDate"},
		{When{FirstDate: "2025-03-02", LastDate: "2025-03-01"}, "conditions.lastDate"},
		{When{Start: `"); permit(principal, action, resource); //`, End: "20:00"}, "conditions.start"},
	} {
		_, err := CompileConditions(tc.when, nil, "conditions")
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want one naming %s", tc.when, err, tc.field)
		}
	}
	for _, z := range []string{"", "Local", "Mars/Olympus", "../../etc/passwd", "Europe/Berlin\x00", strings.Repeat("A", 300)} {
		if _, err := LoadZone(z); err == nil {
			t.Errorf("zone %q accepted", z)
		}
	}
	if loc, err := LoadZone("America/New_York"); err != nil || loc.String() != "America/New_York" {
		t.Errorf("America/New_York: %v %v", loc, err)
	}
}

// FuzzConditions: any When is refused with a field error or compiles and
// decides, with an Until after the clock.
func FuzzConditions(f *testing.F) {
	for _, w := range []When{{}, {Days: []string{"fri"}, Start: "22:00", End: "02:00"}, {FirstDate: "2025-03-20", LastDate: "2025-03-23"}} {
		b, _ := json.Marshal(w)
		f.Add(b, "Europe/Berlin", int64(1742248800))
	}
	f.Fuzz(func(t *testing.T, data []byte, zone string, unix int64) {
		var w When
		if json.Unmarshal(data, &w) != nil {
			return
		}
		loc, err := LoadZone(zone)
		if err != nil {
			return
		}
		c, err := CompileConditions(w, loc, "conditions")
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("not a field error: %v", err)
			}
			return
		}
		now := time.Unix(unix%(1<<34), 0)
		d := NewEngine(func() time.Time { return now }, nil).Within(c)
		if !d.Until.IsZero() && !d.Until.After(now) {
			t.Fatalf("until %v is not after %v", d.Until, now)
		}
	})
}
