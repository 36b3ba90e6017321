package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const quietHours = `// Platform-wide: nobody pairs at night.
@id("no-night-pairing")
@reason("no pairing between 23:00 and 06:00")
forbid (principal, action == Action::"pair", resource)
when { context.local.minute >= 1380 || context.local.minute < 360 };

// Dependants may read the thermostat everywhere.
permit (principal in Role::"dependant", action == Action::"use", resource in Model::"Thermo 1");
`

func TestPlatformPolicies(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 17, 23, 30, 0, 0, berlin(t))}
	e := NewEngine(c.now, nil)
	p, err := e.SetPlatform([]byte(quietHours))
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 2 {
		t.Fatalf("%d policies", p.Len())
	}
	s := compileFamily(t)
	d, _ := e.Decide(s, Request{UserID: "mum", ThingID: "speaker1", Action: Pair})
	if d.Allowed || d.Rule != "platform:no-night-pairing" || d.Reason != "denied: no pairing between 23:00 and 06:00" {
		t.Errorf("a platform forbid over a guardian: %+v", d)
	}
	d, _ = e.Decide(s, Request{UserID: "emma", ThingID: "thermo", Action: Use})
	if !d.Allowed || d.Rule != "platform:2" || d.Reason != "allowed: platform policy 2 (line 8)" {
		t.Errorf("a platform permit: %+v", d)
	}
	c.t = c.t.Add(8 * time.Hour)
	if d, _ := e.Decide(s, Request{UserID: "mum", ThingID: "speaker1", Action: Pair}); !d.Allowed {
		t.Errorf("by day: %+v", d)
	}
}

// A refused set names line and reason, and never replaces the working one.
func TestPlatformRefusals(t *testing.T) {
	deepAnd := "permit (principal, action, resource) when { " + strings.Repeat("true && ", MaxDepth) + "true };"
	tests := []struct {
		name   string
		src    string
		line   int
		reason string
	}{
		{"syntax", "permit (principal, action, resource);\nforbid (principal, action, resource) when { 1 + };", 2, "invalid primary"},
		{"unknown attribute", "permit (principal, action, resource);\n\nforbid (principal, action, resource)\nwhen { context.local.hour > 3 };", 3, "attribute `hour` in context"},
		{"wrong type", "permit (principal, action, resource) when { context.scope > 3 };", 1, "expected Long"},
		{"unknown entity type", "permit (principal == Admin::\"root\", action, resource);", 1, "unrecognized entity type `Admin`"},
		{"unknown action", "permit (principal, action == Action::\"delete\", resource);", 1, "Action::\"delete\""},
		{"duplicate id", "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);", 2, "earlier policy"},
		{"huge", strings.Repeat("permit (principal, action, resource);\n", MaxPlatformBytes/38+1), 0, "bytes, more than"},
		{"many", strings.Repeat("permit(principal,action,resource);", MaxPlatformPolicies+1), 0, "policies, more than"},
		{"nested brackets", "permit (principal, action, resource) when {\n" + strings.Repeat("(", MaxNesting) + "true" + strings.Repeat(")", MaxNesting) + " };", 2, "nested more than"},
		{"deep expression", deepAnd, 1, "deep, more than"},
		{"deep negation", "permit (principal, action, resource) when { " + strings.Repeat("!", MaxDepth) + "(" + strings.Repeat("!", MaxDepth) + "true) };", 1, "deep, more than"},
		{"long negation", "permit (principal, action, resource) when { " + strings.Repeat("! ", MaxPlatformBytes/3) + "true };", 1, "in a row"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(nil, nil)
			working, err := e.SetPlatform([]byte(quietHours))
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.SetPlatform([]byte(tt.src))
			var pe PolicyErrors
			if !errors.As(err, &pe) {
				t.Fatalf("error %v, want PolicyErrors", err)
			}
			for i := range pe {
				if slices.Contains(pe[:i], pe[i]) {
					t.Errorf("fault reported twice: %v", pe)
				}
			}
			if pe[0].Line != tt.line || !strings.Contains(pe[0].Reason, tt.reason) {
				t.Errorf("got %v, want line %d and a reason containing %q", pe, tt.line, tt.reason)
			}
			if e.Platform() != working {
				t.Error("a refused set replaced the working one")
			}
		})
	}
	// Brackets inside strings and comments are not nesting.
	ok := "permit (principal, action, resource) when { context.scope == \"" + strings.Repeat("(", 100) + "\\\"\" }; // " + strings.Repeat("[", 100)
	if _, err := ParsePlatform([]byte(ok)); err != nil {
		t.Errorf("brackets in a string or a comment: %v", err)
	}
}

// Cedar skips a policy that fails to evaluate; a failing forbid refuses
// instead.
func TestPlatformFailingForbidRefuses(t *testing.T) {
	e := NewEngine(nil, nil)
	if _, err := e.SetPlatform([]byte(`@reason("overflowing rule") forbid (principal, action, resource) when { context.local.date * 9223372036854775807 > 0 };`)); err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(compileFamily(t), Request{UserID: "mum", ThingID: "speaker1", Action: Use})
	if err != nil || d.Allowed || d.Reason != "a deny rule could not be evaluated: overflowing rule" {
		t.Errorf("got %+v, %v", d, err)
	}
}
