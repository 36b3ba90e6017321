package policy

import (
	"strings"
	"testing"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
)

func TestCheckRuleNamesTheField(t *testing.T) {
	ok := emmaSchoolDays
	tests := []struct {
		name  string
		edit  func(r *Rule)
		field string
	}{
		{"effect", func(r *Rule) { r.Effect = "maybe" }, "rules[0].effect"},
		{"who kind", func(r *Rule) { r.Who.Kind = "admins" }, "rules[0].who.kind"},
		{"member missing", func(r *Rule) { r.Who.Member = "" }, "rules[0].who.member"},
		{"member with a group", func(r *Rule) { r.Who = Who{Kind: Guests, Member: "emma"} }, "rules[0].who.member"},
		{"member of another household", func(r *Rule) { r.Who.Member = "neighbour" }, "rules[0].who.member"},
		{"things kind", func(r *Rule) { r.Things.Kind = "garage" }, "rules[0].things.kind"},
		{"thing the household does not own", func(r *Rule) { r.Things = Things{Kind: OneThing, ID: "neighbours-camera"} }, "rules[0].things.id"},
		{"unknown room", func(r *Rule) { r.Things = Things{Kind: InRoom, ID: "attic"} }, "rules[0].things.id"},
		{"unknown model", func(r *Rule) { r.Things = Things{Kind: OfModel, ID: "Toaster 9"} }, "rules[0].things.id"},
		{"all with an id", func(r *Rule) { r.Things = Things{Kind: AllThings, ID: "x"} }, "rules[0].things.id"},
		{"control characters", func(r *Rule) { r.Things = Things{Kind: OneThing, ID: "a\x00b"} }, "rules[0].things.id"},
		{"no action", func(r *Rule) { r.Actions = nil }, "rules[0].actions"},
		{"unknown action", func(r *Rule) { r.Actions = []Action{Use, "fly"} }, "rules[0].actions[1]"},
		{"action twice", func(r *Rule) { r.Actions = []Action{Use, Use} }, "rules[0].actions[1]"},
		{"scopes without gateway", func(r *Rule) { r.Scopes = []string{"a"} }, "rules[0].scopes"},
		{"bad scope", func(r *Rule) { r.Actions = []Action{Gateway}; r.Scopes = []string{"a b"} }, "rules[0].scopes[0]"},
		{"unknown day", func(r *Rule) { r.When.Days = []string{"mon", "funday"} }, "rules[0].when.days[1]"},
		{"day twice", func(r *Rule) { r.When.Days = []string{"mon", "mon"} }, "rules[0].when.days[1]"},
		{"start without end", func(r *Rule) { r.When.End = "" }, "rules[0].when.end"},
		{"end without start", func(r *Rule) { r.When.Start = "" }, "rules[0].when.start"},
		{"start 24:00", func(r *Rule) { r.When.Start = "24:00" }, "rules[0].when.start"},
		{"start 7:00", func(r *Rule) { r.When.Start = "7:00" }, "rules[0].when.start"},
		{"start with a sign", func(r *Rule) { r.When.Start = "+7:00" }, "rules[0].when.start"},
		{"end 20:60", func(r *Rule) { r.When.End = "20:60" }, "rules[0].when.end"},
		{"empty window", func(r *Rule) { r.When.End = r.When.Start }, "rules[0].when.end"},
		{"bad date", func(r *Rule) { r.When.FirstDate = "2025-02-30" }, "rules[0].when.firstDate"},
		{"dates reversed", func(r *Rule) { r.When.FirstDate, r.When.LastDate = "2025-03-02", "2025-03-01" }, "rules[0].when.lastDate"},
	}
	h := family(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			r.Who, r.Things = ok.Who, ok.Things
			r.Actions = append([]Action(nil), ok.Actions...)
			r.When.Days = append([]string(nil), ok.When.Days...)
			tt.edit(&r)
			err := h.CheckRules([]Rule{r})
			fe, isField := err.(*FieldError)
			if !isField || fe.Field != tt.field {
				t.Fatalf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
	if err := h.CheckRules(make([]Rule, MaxRules+1)); err == nil || err.(*FieldError).Field != "rules" {
		t.Errorf("%d rules: %v, want refused", MaxRules+1, err)
	}
}

// Names and ids full of Cedar syntax stay data: the compiled policies are
// exactly the rules, and a stranger is still refused.
func TestCompileInjection(t *testing.T) {
	evil := []string{
		`x" ) ; permit ( principal , action , resource ) ; //`,
		`x"}; permit(principal, action, resource); forbid(principal, action, resource) when {"`,
		"x\\\" || true || \"",
		`Household::"h1"`,
	}
	for _, bad := range evil {
		h := &Household{
			ID:      bad,
			Zone:    time.UTC,
			Members: []Member{{UserID: bad, Name: bad, Role: Dependant}, {UserID: "mum", Name: "Mum", Role: Guardian}},
			Rooms:   []Room{{ID: bad, Name: bad}},
			Things:  []Thing{{ID: bad, Name: bad, Model: bad, RoomID: bad}, {ID: "other", Name: "Other", RoomID: bad}},
		}
		h.Rules = []Rule{
			{ID: bad, Effect: Allow, Who: Who{Kind: OneMember, Member: bad}, Things: Things{Kind: OneThing, ID: bad}, Actions: []Action{Use},
				When: When{Start: "07:00", End: "08:00"}},
			{ID: bad + "2", Effect: Allow, Who: Who{Kind: OneMember, Member: bad}, Things: Things{Kind: InRoom, ID: bad}, Actions: []Action{Pair}},
			{ID: bad + "3", Effect: Allow, Who: Who{Kind: OneMember, Member: bad}, Things: Things{Kind: OfModel, ID: bad}, Actions: []Action{Configure}},
		}
		if err := h.CheckRules(h.Rules); err != nil {
			t.Fatalf("%q: %v", bad, err)
		}
		s, err := Compile(h)
		if err != nil {
			t.Fatalf("%q: %v", bad, err)
		}
		// The policies printed as Cedar and read back are the same number:
		// nothing was smuggled in as a policy of its own.
		text := s.policies.MarshalCedar()
		back, err := cedar.NewPolicyListFromBytes("", text)
		if err != nil || len(back) != 1+len(h.Rules) {
			t.Fatalf("%q: compiled text reads back as %d policies (%v):\n%s", bad, len(back), err, text)
		}
		e := NewEngine(func() time.Time { return time.Date(2025, 3, 17, 12, 0, 0, 0, time.UTC) }, nil)
		for _, req := range []Request{
			{UserID: "stranger", ThingID: bad, Action: Use},
			{UserID: bad, ThingID: bad, Action: Use}, // outside 07:00–08:00
			{UserID: bad, ThingID: "other", Action: Configure},
		} {
			if d, err := e.Decide(s, req); err != nil || d.Allowed {
				t.Errorf("%q: %+v allowed=%v err=%v: %s", bad, req, d.Allowed, err, d.Reason)
			}
		}
		if d, _ := e.Decide(s, Request{UserID: bad, ThingID: "other", Action: Pair}); !d.Allowed {
			t.Errorf("%q: the room rule does not apply: %s", bad, d.Reason)
		}
		if d, _ := e.Decide(s, Request{UserID: bad, ThingID: bad, Action: Configure}); !d.Allowed || !strings.Contains(d.Reason, "the things of model "+bad) {
			t.Errorf("%q: the model rule does not apply: %s", bad, d.Reason)
		}
	}
}

// A stored rule whose thing, room or member has left the household compiles
// and matches nothing.
func TestCompileStaleReferences(t *testing.T) {
	h := family(t,
		Rule{ID: "gone-thing", Effect: Allow, Who: Who{Kind: Everyone}, Things: Things{Kind: OneThing, ID: "sold"}, Actions: []Action{Use}},
		Rule{ID: "gone-member", Effect: Allow, Who: Who{Kind: OneMember, Member: "left"}, Things: Things{Kind: AllThings}, Actions: []Action{Use}},
		Rule{ID: "gone-room", Effect: Allow, Who: Who{Kind: Everyone}, Things: Things{Kind: InRoom, ID: "attic"}, Actions: []Action{Use}},
	)
	s, err := Compile(h)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(nil, nil)
	for _, req := range []Request{{UserID: "emma", ThingID: "sold", Action: Use}, {UserID: "left", ThingID: "speaker1", Action: Use}, {UserID: "emma", ThingID: "speaker1", Action: Use}} {
		if d, _ := e.Decide(s, req); d.Allowed {
			t.Errorf("%+v allowed: %s", req, d.Reason)
		}
	}
	if got := s.texts["rule:gone-member"](English); got != "a former member may use every thing of the household" {
		t.Errorf("rendered %q", got)
	}
}

func TestCompileRefusesDuplicateIDs(t *testing.T) {
	_, err := Compile(family(t, emmaSchoolDays, emmaSchoolDays))
	if fe, ok := err.(*FieldError); !ok || fe.Field != "rules[1].id" {
		t.Fatalf("error %v, want one naming rules[1].id", err)
	}
}

func TestDescribe(t *testing.T) {
	h := family(t)
	for _, tc := range []struct {
		r    Rule
		want string
	}{
		{emmaSchoolDays, "Emma may use the things in Kids' room from 07:00 to 20:00 on school days"},
		{noConfigureForDependants, "dependants may not configure every thing of the household"},
		{granUntilSunday, "guests may use Living-room speaker until 2025-03-23"},
		{Rule{Effect: Allow, Who: Who{Kind: Everyone}, Things: Things{Kind: AllThings}, Actions: []Action{Publish, Subscribe, Gateway},
			When: When{Days: []string{"sat", "sun"}, FirstDate: "2025-01-01", LastDate: "2025-12-31"}},
			"everyone may publish over MQTT to, subscribe over MQTT to or call any API through the gateway for every thing of the household on weekends from 2025-01-01 until 2025-12-31"},
		{Rule{Effect: Deny, Who: Who{Kind: Guardians}, Things: Things{Kind: OneThing, ID: "thermo"}, Actions: []Action{Configure},
			When: When{Days: []string{"wed", "mon"}, FirstDate: "2025-06-01"}},
			"guardians may not configure Thermostat on Mondays and Wednesdays from 2025-06-01 on"},
	} {
		if got := h.Describe(&tc.r); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
