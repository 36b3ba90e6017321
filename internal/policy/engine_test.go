package policy

import (
	"strings"
	"testing"
	"time"
)

// clock is an injectable clock for the engine.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// family is the household of the tests: a guardian, a child, a guest; two
// rooms; two speakers of one model and a thermostat.
func family(t testing.TB, rules ...Rule) *Household {
	return &Household{
		ID:   "h1",
		Zone: berlin(t),
		Members: []Member{
			{UserID: "mum", Name: "Mum", Role: Guardian},
			{UserID: "emma", Name: "Emma", Role: Dependant},
			{UserID: "gran", Name: "Gran", Role: Guest},
		},
		Rooms: []Room{{ID: "kids", Name: "Kids' room"}, {ID: "living", Name: "Living room"}},
		Things: []Thing{
			{ID: "speaker1", Name: "Kids' speaker", Model: "Echo 3", RoomID: "kids"},
			{ID: "speaker2", Name: "Living-room speaker", Model: "Echo 3", RoomID: "living"},
			{ID: "thermo", Name: "Thermostat", Model: "Thermo 1", RoomID: "living"},
		},
		Rules: rules,
	}
}

func compileFamily(t testing.TB, rules ...Rule) *Set {
	t.Helper()
	h := family(t, rules...)
	if err := h.CheckRules(rules); err != nil {
		t.Fatalf("CheckRules: %v", err)
	}
	s, err := Compile(h)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

var (
	emmaSchoolDays = Rule{ID: "r-emma", Effect: Allow, Who: Who{Kind: OneMember, Member: "emma"},
		Things: Things{Kind: InRoom, ID: "kids"}, Actions: []Action{Use},
		When: When{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "07:00", End: "20:00"}}
	noConfigureForDependants = Rule{ID: "r-noconf", Effect: Deny, Who: Who{Kind: Dependants},
		Things: Things{Kind: AllThings}, Actions: []Action{Configure}}
	everyoneThermostat = Rule{ID: "r-thermo", Effect: Allow, Who: Who{Kind: Everyone},
		Things: Things{Kind: OneThing, ID: "thermo"}, Actions: []Action{Use, Configure}}
	granUntilSunday = Rule{ID: "r-gran", Effect: Allow, Who: Who{Kind: Guests},
		Things: Things{Kind: OneThing, ID: "speaker2"}, Actions: []Action{Use},
		When: When{LastDate: "2025-03-23"}}
	fridayNight = Rule{ID: "r-friday", Effect: Allow, Who: Who{Kind: Guests},
		Things: Things{Kind: OfModel, ID: "Echo 3"}, Actions: []Action{Subscribe},
		When: When{Days: []string{"fri"}, Start: "22:00", End: "02:00"}}
	emmaPlaylists = Rule{ID: "r-api", Effect: Allow, Who: Who{Kind: OneMember, Member: "emma"},
		Things: Things{Kind: OneThing, ID: "speaker1"}, Actions: []Action{Gateway}, Scopes: []string{"playlists:read"}}
)

func TestDecide(t *testing.T) {
	loc := berlin(t)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04 Mon", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	s := compileFamily(t, emmaSchoolDays, noConfigureForDependants, everyoneThermostat, granUntilSunday, fridayNight, emmaPlaylists)
	c := &clock{}
	e := NewEngine(c.now, nil)
	tests := []struct {
		name    string
		at      string
		req     Request
		allowed bool
		rule    string
		reason  string // a part of the reason
	}{
		{"school day inside the window", "2025-03-17 19:59 Mon", Request{UserID: "emma", ThingID: "speaker1", Action: Use}, true, "r-emma",
			"allowed: Emma may use the things in Kids' room from 07:00 to 20:00 on school days"},
		{"school day at the window's end", "2025-03-17 20:00 Mon", Request{UserID: "emma", ThingID: "speaker1", Action: Use}, false, "r-emma",
			"outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00 on school days"},
		{"school day at the window's start", "2025-03-18 07:00 Tue", Request{UserID: "emma", ThingID: "speaker1", Action: Use}, true, "r-emma", ""},
		{"school day before the window", "2025-03-18 06:59 Tue", Request{UserID: "emma", ThingID: "speaker1", Action: Use}, false, "r-emma", "outside"},
		{"saturday", "2025-03-22 10:00 Sat", Request{UserID: "emma", ThingID: "speaker1", Action: Use}, false, "r-emma", "outside"},
		{"another room", "2025-03-17 10:00 Mon", Request{UserID: "emma", ThingID: "speaker2", Action: Use}, false, "",
			"no rule allows Emma to use Living-room speaker"},
		{"guardian by standing", "2025-03-22 03:00 Sat", Request{UserID: "mum", ThingID: "speaker1", Action: Pair}, true, "guardians", "guardians may do everything"},
		{"deny overrides allow", "2025-03-17 10:00 Mon", Request{UserID: "emma", ThingID: "thermo", Action: Configure}, false, "r-noconf",
			"denied: dependants may not configure every thing of the household"},
		{"the allow without a deny", "2025-03-17 10:00 Mon", Request{UserID: "gran", ThingID: "thermo", Action: Configure}, true, "r-thermo", "everyone may use or configure Thermostat"},
		{"guest on the last day", "2025-03-23 23:59 Sun", Request{UserID: "gran", ThingID: "speaker2", Action: Use}, true, "r-gran", "until 2025-03-23"},
		{"guest the day after", "2025-03-24 00:00 Mon", Request{UserID: "gran", ThingID: "speaker2", Action: Use}, false, "r-gran", "outside"},
		{"friday evening", "2025-03-21 23:00 Fri", Request{UserID: "gran", ThingID: "speaker1", Action: Subscribe}, true, "r-friday",
			"guests may subscribe over MQTT to the things of model Echo 3 from 22:00 to 02:00 on Fridays"},
		{"friday night past midnight", "2025-03-22 01:59 Sat", Request{UserID: "gran", ThingID: "speaker1", Action: Subscribe}, true, "r-friday", ""},
		{"friday night ends", "2025-03-22 02:00 Sat", Request{UserID: "gran", ThingID: "speaker1", Action: Subscribe}, false, "r-friday", "outside"},
		{"saturday evening is not friday", "2025-03-22 23:00 Sat", Request{UserID: "gran", ThingID: "speaker1", Action: Subscribe}, false, "r-friday", "outside"},
		{"friday morning belongs to thursday", "2025-03-21 01:00 Fri", Request{UserID: "gran", ThingID: "speaker1", Action: Subscribe}, false, "r-friday", "outside"},
		{"a rule about subscribing is not about use", "2025-03-21 23:00 Fri", Request{UserID: "gran", ThingID: "speaker1", Action: Use}, false, "",
			"no rule allows Gran to use Kids' speaker"},
		{"use covers subscribing over MQTT", "2025-03-21 23:00 Fri", Request{UserID: "gran", ThingID: "thermo", Action: Subscribe}, true, "r-thermo",
			"everyone may use or configure Thermostat"},
		{"use covers publishing over MQTT", "2025-03-17 19:59 Mon", Request{UserID: "emma", ThingID: "speaker1", Action: Publish}, true, "r-emma", ""},
		{"use's window bounds publishing over MQTT", "2025-03-17 20:00 Mon", Request{UserID: "emma", ThingID: "speaker1", Action: Publish}, false, "r-emma", "outside"},
		{"gateway scope allowed", "2025-03-17 10:00 Mon", Request{UserID: "emma", ThingID: "speaker1", Action: Gateway, Scope: "playlists:read"}, true, "r-api",
			"Emma may call the gateway with scope playlists:read for Kids' speaker"},
		{"gateway scope not listed", "2025-03-17 10:00 Mon", Request{UserID: "emma", ThingID: "speaker1", Action: Gateway, Scope: "playlists:write"}, false, "", "no rule allows"},
		{"stranger", "2025-03-17 10:00 Mon", Request{UserID: "mallory", ThingID: "speaker1", Action: Use}, false, "", "no rule allows a former member"},
		{"guardian and a thing outside the household", "2025-03-17 10:00 Mon", Request{UserID: "mum", ThingID: "elsewhere", Action: Use}, false, "", "no rule allows Mum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = at(tt.at)
			d, err := e.Decide(s, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed || d.Rule != tt.rule || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("got allowed=%v rule=%q reason=%q; want allowed=%v rule=%q reason containing %q", d.Allowed, d.Rule, d.Reason, tt.allowed, tt.rule, tt.reason)
			}
			if !d.Local.Equal(c.t) || d.Local.Location().String() != "Europe/Berlin" {
				t.Errorf("decided on %v, want the household's clock %v", d.Local, c.t)
			}
		})
	}
}

// The clock decides in the household's zone, whatever zone it reads in.
func TestDecideUsesTheHouseholdZone(t *testing.T) {
	s := compileFamily(t, emmaSchoolDays)
	// 18:30 UTC on a Monday in March is 19:30 in Berlin (inside the window);
	// 19:30 UTC is 20:30 there (outside).
	for _, tc := range []struct {
		utc     string
		allowed bool
	}{{"2025-03-17T18:30:00Z", true}, {"2025-03-17T19:30:00Z", false}} {
		now, _ := time.Parse(time.RFC3339, tc.utc)
		e := NewEngine(func() time.Time { return now }, nil)
		d, err := e.Decide(s, Request{UserID: "emma", ThingID: "speaker1", Action: Use})
		if err != nil || d.Allowed != tc.allowed {
			t.Errorf("%s: allowed=%v err=%v, want %v", tc.utc, d.Allowed, err, tc.allowed)
		}
	}
}

// Daylight-saving transitions in Europe/Berlin, 2025: on 30 March the clocks
// jump from 02:00 to 03:00; on 26 October they go back from 03:00 to 02:00.
// Windows follow the clock on the wall.
func TestDaylightSaving(t *testing.T) {
	daily := func(start, end string) Rule {
		return Rule{ID: "w", Effect: Allow, Who: Who{Kind: OneMember, Member: "emma"},
			Things: Things{Kind: AllThings}, Actions: []Action{Use}, When: When{Start: start, End: end}}
	}
	tests := []struct {
		name       string
		start, end string
		utc        string
		allowed    bool
	}{
		// Spring forward: 02:30 does not exist on 30 March.
		{"nonexistent start: before the jump", "02:30", "03:30", "2025-03-30T00:59:00Z", false},     // 01:59 CET
		{"nonexistent start: opens at the jump", "02:30", "03:30", "2025-03-30T01:00:00Z", true},    // 03:00 CEST
		{"nonexistent start: closes on the clock", "02:30", "03:30", "2025-03-30T01:30:00Z", false}, // 03:30 CEST
		{"nonexistent end: open before the jump", "01:00", "02:30", "2025-03-30T00:59:00Z", true},   // 01:59 CET
		{"nonexistent end: closed after the jump", "01:00", "02:30", "2025-03-30T01:00:00Z", false}, // 03:00 CEST
		{"window over the jump: before", "01:00", "04:00", "2025-03-30T00:30:00Z", true},            // 01:30 CET
		{"window over the jump: after", "01:00", "04:00", "2025-03-30T01:59:00Z", true},             // 03:59 CEST
		{"window over the jump: end", "01:00", "04:00", "2025-03-30T02:00:00Z", false},              // 04:00 CEST
		{"overnight window over the jump", "22:00", "07:00", "2025-03-30T04:59:00Z", true},          // 06:59 CEST
		{"overnight window over the jump: end", "22:00", "07:00", "2025-03-30T05:00:00Z", false},    // 07:00 CEST
		// Fall back: 02:00–02:59 happens twice on 26 October.
		{"ambiguous time, first pass", "02:00", "03:00", "2025-10-26T00:30:00Z", true},                // 02:30 CEST
		{"ambiguous time, second pass", "02:00", "03:00", "2025-10-26T01:30:00Z", true},               // 02:30 CET
		{"ambiguous time, after", "02:00", "03:00", "2025-10-26T02:00:00Z", false},                    // 03:00 CET
		{"window over the fall back", "01:00", "04:00", "2025-10-26T02:59:00Z", true},                 // 03:59 CET, 4 h after 01:00 CEST
		{"window over the fall back: end", "01:00", "04:00", "2025-10-26T03:00:00Z", false},           // 04:00 CET
		{"overnight window over the fall back", "20:00", "07:00", "2025-10-26T05:59:00Z", true},       // 06:59 CET
		{"overnight window over the fall back: end", "20:00", "07:00", "2025-10-26T06:00:00Z", false}, // 07:00 CET
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compileFamily(t, daily(tt.start, tt.end))
			now, err := time.Parse(time.RFC3339, tt.utc)
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewEngine(func() time.Time { return now }, nil).Decide(s, Request{UserID: "emma", ThingID: "speaker1", Action: Use})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tt.allowed {
				t.Errorf("at %s (%s in Berlin), window %s–%s: allowed=%v, want %v (%s)", tt.utc, d.Local.Format("15:04 MST"), tt.start, tt.end, d.Allowed, tt.allowed, d.Reason)
			}
		})
	}
}

// A whole week of school days, hour by hour, against what a guardian reads
// in the rule.
func TestSchoolDaysAllWeek(t *testing.T) {
	loc := berlin(t)
	s := compileFamily(t, emmaSchoolDays)
	c := &clock{}
	e := NewEngine(c.now, nil)
	for h := range 7 * 24 {
		c.t = time.Date(2025, 3, 17, 0, 30, 0, 0, loc).Add(time.Duration(h) * time.Hour) // Monday 00:30 on
		want := c.t.Weekday() >= time.Monday && c.t.Weekday() <= time.Friday && c.t.Hour() >= 7 && c.t.Hour() < 20
		d, err := e.Decide(s, Request{UserID: "emma", ThingID: "speaker1", Action: Use})
		if err != nil || d.Allowed != want {
			t.Errorf("%s: allowed=%v err=%v, want %v", c.t.Format("Mon 15:04"), d.Allowed, err, want)
		}
	}
}

func TestDecideRefusesMalformedRequests(t *testing.T) {
	s := compileFamily(t)
	e := NewEngine(nil, nil)
	for _, tc := range []struct {
		req   Request
		field string
	}{
		{Request{ThingID: "speaker1", Action: Use}, "subject.id"},
		{Request{UserID: "emma", Action: Use}, "resource.id"},
		{Request{UserID: "emma", ThingID: "speaker1", Action: "fly"}, "action.name"},
		{Request{UserID: "emma", ThingID: "speaker1", Action: Use, Scope: "x"}, "action.properties.scope"},
	} {
		_, err := e.Decide(s, tc.req)
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want one naming %s", tc.req, err, tc.field)
		}
	}
}

// A deny of use denies streaming over MQTT too; a deny of publishing over
// MQTT leaves use alone.
func TestUseCoversMQTT(t *testing.T) {
	noUse := Rule{ID: "r-nouse", Effect: Deny, Who: Who{Kind: Guests}, Things: Things{Kind: OneThing, ID: "speaker1"}, Actions: []Action{Use}}
	noPublish := Rule{ID: "r-nopub", Effect: Deny, Who: Who{Kind: OneMember, Member: "emma"}, Things: Things{Kind: AllThings}, Actions: []Action{Publish}}
	s := compileFamily(t, fridayNight, noUse, emmaSchoolDays, noPublish)
	loc := berlin(t)
	friday2300 := time.Date(2025, 3, 21, 23, 0, 0, 0, loc)
	monday1000 := time.Date(2025, 3, 17, 10, 0, 0, 0, loc)
	for _, tc := range []struct {
		at      time.Time
		req     Request
		allowed bool
		rule    string
	}{
		{friday2300, Request{UserID: "gran", ThingID: "speaker1", Action: Subscribe}, false, "r-nouse"},
		{friday2300, Request{UserID: "gran", ThingID: "speaker2", Action: Subscribe}, true, "r-friday"},
		{monday1000, Request{UserID: "emma", ThingID: "speaker1", Action: Publish}, false, "r-nopub"},
		{monday1000, Request{UserID: "emma", ThingID: "speaker1", Action: Subscribe}, true, "r-emma"},
		{monday1000, Request{UserID: "emma", ThingID: "speaker1", Action: Use}, true, "r-emma"},
	} {
		d, err := NewEngine(func() time.Time { return tc.at }, nil).Decide(s, tc.req)
		if err != nil || d.Allowed != tc.allowed || d.Rule != tc.rule {
			t.Errorf("%+v: allowed=%v rule=%q err=%v, want %v %q", tc.req, d.Allowed, d.Rule, err, tc.allowed, tc.rule)
		}
	}
}

// Until: the next time a decision may change with the clock, on the
// household's wall clock and across its changes of offset.
func TestUntil(t *testing.T) {
	loc := berlin(t)
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	daily := func(start, end string) Rule {
		return Rule{ID: "w", Effect: Allow, Who: Who{Kind: OneMember, Member: "emma"},
			Things: Things{Kind: AllThings}, Actions: []Action{Use}, When: When{Start: start, End: end}}
	}
	clocked, err := ParsePlatform([]byte(`forbid (principal, action == Action::"pair", resource) when { context.local.minute >= 1380 };`))
	if err != nil {
		t.Fatal(err)
	}
	scoped, err := ParsePlatform([]byte(`forbid (principal, action == Action::"gateway", resource) when { context.scope == "admin" };`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		rules    []Rule
		platform *Platform
		now      time.Time
		want     time.Time // zero: never
	}{
		{"the window closes", []Rule{emmaSchoolDays}, nil, time.Date(2025, 3, 17, 19, 59, 30, 0, loc), time.Date(2025, 3, 17, 20, 0, 0, 0, loc)},
		{"closed: midnight changes the day", []Rule{emmaSchoolDays}, nil, time.Date(2025, 3, 17, 20, 0, 0, 0, loc), time.Date(2025, 3, 18, 0, 0, 0, 0, loc)},
		{"before the window opens", []Rule{emmaSchoolDays}, nil, time.Date(2025, 3, 18, 0, 0, 0, 0, loc), time.Date(2025, 3, 18, 7, 0, 0, 0, loc)},
		{"a window every day, past its end", []Rule{daily("07:00", "20:00")}, nil, time.Date(2025, 3, 17, 21, 0, 0, 0, loc), time.Date(2025, 3, 18, 7, 0, 0, 0, loc)},
		{"across midnight", []Rule{fridayNight}, nil, time.Date(2025, 3, 21, 23, 0, 0, 0, loc), time.Date(2025, 3, 22, 0, 0, 0, 0, loc)},
		{"after midnight", []Rule{fridayNight}, nil, time.Date(2025, 3, 22, 0, 0, 0, 0, loc), time.Date(2025, 3, 22, 2, 0, 0, 0, loc)},
		{"a last date", []Rule{granUntilSunday}, nil, time.Date(2025, 3, 23, 23, 59, 59, 0, loc), time.Date(2025, 3, 24, 0, 0, 0, 0, loc)},
		{"no rule with a time", []Rule{noConfigureForDependants, everyoneThermostat}, nil, time.Date(2025, 3, 17, 10, 0, 0, 0, loc), time.Time{}},
		{"a platform policy reading the scope only", []Rule{noConfigureForDependants}, scoped, time.Date(2025, 3, 17, 10, 0, 0, 0, loc), time.Time{}},
		{"a platform policy reading the time", []Rule{noConfigureForDependants}, clocked, time.Date(2025, 3, 17, 10, 0, 30, 0, loc), time.Date(2025, 3, 17, 10, 1, 0, 0, loc)},
		// 30 March 2025: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
		{"a start that does not exist: the jump", []Rule{daily("02:30", "03:30")}, nil, utc("2025-03-30T00:59:00Z"), utc("2025-03-30T01:00:00Z")},
		{"after the jump", []Rule{daily("02:30", "03:30")}, nil, utc("2025-03-30T01:00:00Z"), utc("2025-03-30T01:30:00Z")},
		{"a window over the jump", []Rule{daily("01:00", "04:00")}, nil, utc("2025-03-30T00:30:00Z"), utc("2025-03-30T01:00:00Z")},
		// 26 October 2025: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
		{"the hour that comes twice: first pass", []Rule{daily("02:00", "03:00")}, nil, utc("2025-10-26T00:59:30Z"), utc("2025-10-26T01:00:00Z")},
		{"the hour that comes twice: second pass", []Rule{daily("02:00", "03:00")}, nil, utc("2025-10-26T01:00:00Z"), utc("2025-10-26T02:00:00Z")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewEngine(func() time.Time { return tc.now }, nil)
			if tc.platform != nil {
				e.UsePlatform(tc.platform)
			}
			d, err := e.Decide(compileFamily(t, tc.rules...), Request{UserID: "emma", ThingID: "speaker1", Action: Use})
			if err != nil {
				t.Fatal(err)
			}
			if !d.Until.Equal(tc.want) {
				t.Errorf("at %s: until %s, want %s", tc.now.In(loc), d.Until.In(loc), tc.want.In(loc))
			}
		})
	}
}

// Until never promises too much: from many times around both of Berlin's
// changes of offset and an ordinary week, no minute before Until is decided
// otherwise than the time Until was computed at.
func TestUntilIsSound(t *testing.T) {
	weekendNights := Rule{ID: "r-late", Effect: Allow, Who: Who{Kind: Guests}, Things: Things{Kind: OfModel, ID: "Echo 3"},
		Actions: []Action{Subscribe}, When: When{Days: []string{"fri", "sat"}, Start: "22:00", End: "01:30"}}
	rules := []Rule{emmaSchoolDays, granUntilSunday, weekendNights,
		{ID: "r-jump", Effect: Allow, Who: Who{Kind: OneMember, Member: "emma"}, Things: Things{Kind: OneThing, ID: "speaker2"},
			Actions: []Action{Subscribe}, When: When{Start: "02:30", End: "03:30"}},
		{ID: "r-twice", Effect: Deny, Who: Who{Kind: Guests}, Things: Things{Kind: AllThings},
			Actions: []Action{Use}, When: When{Days: []string{"sun"}, Start: "02:15", End: "02:45"}},
	}
	s := compileFamily(t, rules...)
	reqs := []Request{
		{UserID: "emma", ThingID: "speaker1", Action: Use},
		{UserID: "emma", ThingID: "speaker2", Action: Subscribe},
		{UserID: "gran", ThingID: "speaker2", Action: Use},
		{UserID: "gran", ThingID: "speaker1", Action: Subscribe},
	}
	c := &clock{}
	e := NewEngine(c.now, nil)
	for _, from := range []string{"2025-03-21T18:00:00Z", "2025-03-29T22:00:00Z", "2025-10-25T22:00:00Z"} {
		start, _ := time.Parse(time.RFC3339, from)
		for step := range 64 {
			now := start.Add(time.Duration(step) * 23 * time.Minute).Add(17 * time.Second)
			for _, req := range reqs {
				c.t = now
				d, err := e.Decide(s, req)
				if err != nil {
					t.Fatal(err)
				}
				if d.Until.IsZero() || !d.Until.After(now) {
					t.Fatalf("%+v at %s: until %s", req, now, d.Until)
				}
				// Decisions change only where the wall clock's minute does:
				// at whole minutes of UTC (Berlin's offsets are whole hours).
				for m := now.Truncate(time.Minute).Add(time.Minute); m.Before(d.Until); m = m.Add(time.Minute) {
					c.t = m
					later, _ := e.Decide(s, req)
					if later.Allowed != d.Allowed || later.Rule != d.Rule {
						t.Fatalf("%+v: at %s allowed=%v (%s), until %s; but at %s allowed=%v (%s)", req,
							d.Local.Format(time.DateTime+" MST"), d.Allowed, d.Rule, d.Until.In(d.Local.Location()).Format(time.DateTime+" MST"),
							later.Local.Format(time.DateTime+" MST"), later.Allowed, later.Rule)
					}
				}
			}
		}
	}
}

// Household names the household whose rules took part, and only when the
// thing is one of its things.
func TestDecisionNamesTheHousehold(t *testing.T) {
	s := compileFamily(t, emmaSchoolDays)
	e := NewEngine(nil, nil)
	if d, _ := e.Decide(s, Request{UserID: "mum", ThingID: "speaker1", Action: Use}); d.Household != "h1" {
		t.Errorf("a thing of the household: %q", d.Household)
	}
	if d, _ := e.Decide(s, Request{UserID: "mum", ThingID: "elsewhere", Action: Use}); d.Household != "" {
		t.Errorf("a thing not of the household: %q", d.Household)
	}
}

// A thing about to be paired is decided as one of the household's things
// in none of its rooms: rules about every thing or its model speak of it,
// rules about a room or another thing do not.
func TestNewcomer(t *testing.T) {
	c := &clock{time.Date(2025, 3, 17, 10, 0, 0, 0, berlin(t))}
	e := NewEngine(c.now, nil)
	pairAll := Rule{ID: "r-pair", Effect: Allow, Who: Who{Kind: Dependants}, Things: Things{Kind: AllThings}, Actions: []Action{Pair}}
	pairEcho := Rule{ID: "r-echo", Effect: Allow, Who: Who{Kind: OneMember, Member: "emma"}, Things: Things{Kind: OfModel, ID: "Echo 3"}, Actions: []Action{Pair}}
	pairKids := Rule{ID: "r-kids", Effect: Allow, Who: Who{Kind: Dependants}, Things: Things{Kind: InRoom, ID: "kids"}, Actions: []Action{Pair}}
	noPair := Rule{ID: "r-nopair", Effect: Deny, Who: Who{Kind: Everyone}, Things: Things{Kind: AllThings}, Actions: []Action{Pair}}
	tablet := Thing{ID: "tablet", Name: "Emma's tablet", Model: "Tab 9"}
	echo := Thing{ID: "echo", Name: "New speaker", Model: "Echo 3"}
	for _, tc := range []struct {
		name    string
		rules   []Rule
		thing   Thing
		allowed bool
		reason  string
	}{
		{"no rule", nil, tablet, false, "no rule allows Emma to pair Emma's tablet"},
		{"every thing", []Rule{pairAll}, tablet, true, "allowed: dependants may pair every thing of the household"},
		{"its model", []Rule{pairEcho}, echo, true, "allowed: Emma may pair the things of model Echo 3"},
		{"another model", []Rule{pairEcho}, tablet, false, "no rule allows Emma to pair Emma's tablet"},
		{"a room", []Rule{pairKids}, tablet, false, "no rule allows Emma to pair Emma's tablet"},
		{"a deny", []Rule{pairAll, noPair}, tablet, false, "denied: everyone may not pair every thing of the household"},
	} {
		s := compileFamily(t, tc.rules...)
		d, err := e.Decide(s.Newcomer(tc.thing), Request{UserID: "emma", ThingID: tc.thing.ID, Action: Pair})
		if err != nil || d.Allowed != tc.allowed || d.Reason != tc.reason {
			t.Errorf("%s: %+v, %v; want %v %q", tc.name, d, err, tc.allowed, tc.reason)
		}
		if s.Holds(tc.thing.ID) || !s.Holds("speaker1") {
			t.Errorf("%s: the compiled household changed", tc.name)
		}
	}
}
