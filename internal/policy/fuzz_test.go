package policy

import (
	"encoding/json"
	"testing"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
)

// FuzzRule feeds the rule builder arbitrary rules: it refuses them with a
// field error or compiles them into exactly one policy each, valid against
// the schema, that decides without failing.
func FuzzRule(f *testing.F) {
	for _, r := range []Rule{emmaSchoolDays, noConfigureForDependants, everyoneThermostat, granUntilSunday, fridayNight, emmaPlaylists} {
		b, _ := json.Marshal(r)
		f.Add(b, int64(0))
	}
	f.Add([]byte(`{"id":"\"); permit(principal,action,resource); //","effect":"allow","who":{"kind":"member","member":"emma\""},"things":{"kind":"room","id":"kids\")"},"actions":["use"],"when":{"start":"23:59","end":"00:00"}}`), int64(1742248800))
	f.Fuzz(func(t *testing.T, data []byte, unix int64) {
		var r Rule
		if json.Unmarshal(data, &r) != nil {
			return
		}
		h := family(t, r)
		if _, err := parseRule(&r, "rules[0]"); err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("not a field error: %v", err)
			}
			return
		}
		s, err := Compile(h)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("a valid rule did not compile: %v", err)
			}
			return
		}
		back, err := cedar.NewPolicyListFromBytes("", s.policies.MarshalCedar())
		if err != nil || len(back) != 2 {
			t.Fatalf("one rule compiled to %d policies (%v)", len(back), err)
		}
		e := NewEngine(func() time.Time { return time.Unix(unix%(1<<40), 0) }, nil)
		for _, req := range []Request{
			{UserID: "emma", ThingID: "speaker1", Action: Use},
			{UserID: "mallory", ThingID: "speaker1", Action: Use},
			{UserID: "gran", ThingID: "thermo", Action: Gateway, Scope: "x"},
		} {
			d, err := e.Decide(s, req)
			if err != nil {
				t.Fatal(err)
			}
			if req.UserID == "mallory" && d.Allowed {
				t.Fatalf("a stranger was allowed by %s", d.Reason)
			}
		}
	})
}

// FuzzPlatform: a raw policy set is accepted or refused, never a panic, and
// a refusal always says why.
func FuzzPlatform(f *testing.F) {
	f.Add([]byte(quietHours))
	f.Add([]byte(`permit (principal, action, resource) when { "((" == context.scope }; // ((`))
	f.Add([]byte(`forbid (principal, action, resource) when { context.local.date * 9223372036854775807 > 0 };`))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := ParsePlatform(src)
		if err != nil {
			pe, ok := err.(PolicyErrors)
			if !ok || len(pe) == 0 || pe[0].Reason == "" {
				t.Fatalf("refused without a reason: %v", err)
			}
			return
		}
		e := NewEngine(func() time.Time { return time.Date(2025, 3, 17, 12, 0, 0, 0, time.UTC) }, nil)
		e.platform.Store(p)
		if _, err := e.Decide(compileFamily(t), Request{UserID: "emma", ThingID: "speaker1", Action: Use}); err != nil {
			t.Fatal(err)
		}
	})
}
