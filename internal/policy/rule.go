package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/refusal"
)

// Role is what a member is in a household.
type Role string

const (
	Guardian  Role = "guardian"
	Dependant Role = "dependant"
	Guest     Role = "guest"
)

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r == Guardian || r == Dependant || r == Guest }

// Action is what a subject wants to do with a thing; each is an action of
// the schema (Action::"use", …).
type Action string

const (
	Use       Action = "use" // stream, play, read
	Configure Action = "configure"
	Pair      Action = "pair"
	Publish   Action = "mqtt.publish"
	Subscribe Action = "mqtt.subscribe"
	// Gateway is a call through the gateway, with the API scope it needs in
	// Request.Scope.
	Gateway Action = "gateway"
)

// Actions lists every action, in the order the schema declares them.
var Actions = []Action{Use, Configure, Pair, Publish, Subscribe, Gateway}

// Valid reports whether a is an action of the schema.
func (a Action) Valid() bool { return slices.Contains(Actions, a) }

// Effect says what a rule does when it applies; a deny overrides any allow.
type Effect string

const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// WhoKind names the members a rule is about.
type WhoKind string

const (
	OneMember  WhoKind = "member" // Who.Member
	Dependants WhoKind = "dependants"
	Guests     WhoKind = "guests"
	Guardians  WhoKind = "guardians"
	Everyone   WhoKind = "everyone" // every member of the household
)

// ThingsKind names the things a rule is about.
type ThingsKind string

const (
	OneThing  ThingsKind = "thing" // Things.ID is a thing's id
	InRoom    ThingsKind = "room"  // Things.ID is a room's id
	OfModel   ThingsKind = "model" // Things.ID is a model name, as things carry it
	AllThings ThingsKind = "all"   // every thing placed in the household
)

// Bounds of what a household stores, so that one cannot make decisions slow.
const (
	MaxRules    = 500
	maxScopes   = 32
	maxRefLen   = 256
	maxScopeLen = 128
)

// Rule is a guardian's rule in structured form, the only form households
// store. The compiler turns it into one Cedar policy through cedar-go's AST:
// no text of a rule ever becomes policy source.
type Rule struct {
	ID     string `json:"id"`
	Effect Effect `json:"effect"`
	Who    Who    `json:"who"`
	Things Things `json:"things"`
	// Actions the rule is about; Gateway covers Scopes (every scope when
	// Scopes is empty).
	Actions []Action `json:"actions"`
	Scopes  []string `json:"scopes,omitempty"`
	When    When     `json:"when,omitzero"`
}

// Who is the subject of a rule.
type Who struct {
	Kind   WhoKind `json:"kind"`
	Member string  `json:"member,omitempty"` // a user id, for OneMember
}

// Things is the resource of a rule.
type Things struct {
	Kind ThingsKind `json:"kind"`
	ID   string     `json:"id,omitempty"` // for OneThing, InRoom, OfModel
}

// When limits a rule to times of the household's local clock; the zero
// When is always. Days are "mon" … "sun"; Start and End are "HH:MM" (End
// may be "24:00"), an End before Start spans midnight and belongs to the day
// it starts on ("fri 22:00–02:00" includes Saturday 01:00); FirstDate and
// LastDate ("YYYY-MM-DD") are inclusive local dates.
type When struct {
	Days      []string `json:"days,omitempty"`
	Start     string   `json:"start,omitempty"`
	End       string   `json:"end,omitempty"`
	FirstDate string   `json:"firstDate,omitempty"`
	LastDate  string   `json:"lastDate,omitempty"`
}

// IsZero reports whether w places no limit (for JSON's omitzero).
func (w When) IsZero() bool {
	return len(w.Days) == 0 && w.Start == "" && w.End == "" && w.FirstDate == "" && w.LastDate == ""
}

// FieldError says which input of a rule (or of a request) is wrong and why:
// Field is its JSON path, e.g. "rules[2].when.start"; Error() is English
// (the APIs' answer), which a page translates (ui.Refusal).
type FieldError struct{ refusal.FieldError }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

// dayNames are ISO 8601 weekdays: dayNames[0] is Monday (1).
var dayNames = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// window is a rule's When in numbers: weekdays (ISO, sorted, nil for every
// day), minutes since midnight (start < 0: no window), dates as yyyymmdd
// (0: unbounded).
type window struct {
	days                []int
	start, end          int
	firstDate, lastDate int
}

// parse checks w's syntax and returns it in numbers; field prefixes errors.
func (w When) parse(field string) (window, error) {
	out := window{start: -1, end: -1}
	seen := map[int]bool{}
	for i, d := range w.Days {
		n := slices.Index(dayNames, d)
		if n < 0 {
			return out, fieldErr(fmt.Sprintf("%s.days[%d]", field, i), "%q is not one of mon, tue, wed, thu, fri, sat, sun", clip(d))
		}
		if seen[n+1] {
			return out, fieldErr(fmt.Sprintf("%s.days[%d]", field, i), "%s is listed twice", d)
		}
		seen[n+1] = true
		out.days = append(out.days, n+1)
	}
	slices.Sort(out.days)
	if (w.Start == "") != (w.End == "") {
		if w.Start == "" {
			return out, fieldErr(field+".start", "a window needs both start and end")
		}
		return out, fieldErr(field+".end", "a window needs both start and end")
	}
	if w.Start != "" {
		var err error
		if out.start, err = clockMinute(w.Start, false); err != nil {
			return out, fieldErr(field+".start", "%v", err)
		}
		if out.end, err = clockMinute(w.End, true); err != nil {
			return out, fieldErr(field+".end", "%v", err)
		}
		if out.start == out.end || (out.start == 0 && out.end == 24*60) {
			if out.start == out.end {
				return out, fieldErr(field+".end", "the window from %s to %s is empty; for the whole day leave start and end out", w.Start, w.End)
			}
			out.start, out.end = -1, -1 // 00:00–24:00 is the whole day
		}
	}
	var err error
	if out.firstDate, err = localDate(w.FirstDate); err != nil {
		return out, fieldErr(field+".firstDate", "%v", err)
	}
	if out.lastDate, err = localDate(w.LastDate); err != nil {
		return out, fieldErr(field+".lastDate", "%v", err)
	}
	if out.firstDate != 0 && out.lastDate != 0 && out.lastDate < out.firstDate {
		return out, fieldErr(field+".lastDate", "%s is before firstDate %s", w.LastDate, w.FirstDate)
	}
	return out, nil
}

// clockMinute parses "HH:MM" (24-hour) into minutes since midnight; "24:00"
// only as an end.
func clockMinute(s string, isEnd bool) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not a time of day as HH:MM", clip(s))
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || s[0] == '+' || s[0] == '-' || s[3] == '+' || s[3] == '-' {
		return 0, fmt.Errorf("%q is not a time of day as HH:MM", clip(s))
	}
	if h == 24 && m == 0 && isEnd {
		return 24 * 60, nil
	}
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59%s)", s, map[bool]string{true: ", or 24:00"}[isEnd])
	}
	return h*60 + m, nil
}

// localDate parses "YYYY-MM-DD" into yyyymmdd; "" is 0.
func localDate(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil || d.Year() < 2000 || d.Year() > 9999 {
		return 0, fmt.Errorf("%q is not a date as YYYY-MM-DD (years 2000 to 9999)", clip(s))
	}
	return d.Year()*10000 + int(d.Month())*100 + d.Day(), nil
}

// parseRule checks r's syntax (not whether what it names exists: see
// Household.Check) and returns its window.
func parseRule(r *Rule, field string) (window, error) {
	if r.Effect != Allow && r.Effect != Deny {
		return window{}, fieldErr(field+".effect", "%q is neither allow nor deny", clip(string(r.Effect)))
	}
	switch r.Who.Kind {
	case OneMember:
		if err := checkRef(r.Who.Member, field+".who.member"); err != nil {
			return window{}, err
		}
	case Dependants, Guests, Guardians, Everyone:
		if r.Who.Member != "" {
			return window{}, fieldErr(field+".who.member", "only who.kind member names a member")
		}
	default:
		return window{}, fieldErr(field+".who.kind", "%q is not one of member, dependants, guests, guardians, everyone", clip(string(r.Who.Kind)))
	}
	switch r.Things.Kind {
	case OneThing, InRoom, OfModel:
		if err := checkRef(r.Things.ID, field+".things.id"); err != nil {
			return window{}, err
		}
	case AllThings:
		if r.Things.ID != "" {
			return window{}, fieldErr(field+".things.id", "things.kind all names no thing")
		}
	default:
		return window{}, fieldErr(field+".things.kind", "%q is not one of thing, room, model, all", clip(string(r.Things.Kind)))
	}
	if len(r.Actions) == 0 {
		return window{}, fieldErr(field+".actions", "name at least one action")
	}
	for i, a := range r.Actions {
		if !a.Valid() {
			return window{}, fieldErr(fmt.Sprintf("%s.actions[%d]", field, i), "%q is not one of use, configure, pair, mqtt.publish, mqtt.subscribe, gateway", clip(string(a)))
		}
		if slices.Index(r.Actions, a) != i {
			return window{}, fieldErr(fmt.Sprintf("%s.actions[%d]", field, i), "%s is listed twice", a)
		}
	}
	if len(r.Scopes) > 0 && !slices.Contains(r.Actions, Gateway) {
		return window{}, fieldErr(field+".scopes", "scopes limit the gateway action, which actions does not list")
	}
	if len(r.Scopes) > maxScopes {
		return window{}, fieldErr(field+".scopes", "at most %d scopes", maxScopes)
	}
	for i, s := range r.Scopes {
		if err := checkScope(s); err != nil {
			return window{}, fieldErr(fmt.Sprintf("%s.scopes[%d]", field, i), "%v", err)
		}
	}
	return r.When.parse(field + ".when")
}

// checkRef accepts an id or model name: present, bounded, printable UTF-8.
// (The compiler would carry any string safely; this keeps stored rules and
// their rendering sane.)
func checkRef(s, field string) error {
	switch {
	case s == "":
		return fieldErr(field, "missing")
	case len(s) > maxRefLen:
		return fieldErr(field, "longer than %d bytes", maxRefLen)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, isControl):
		return fieldErr(field, "not printable UTF-8")
	}
	return nil
}

// checkScope accepts an OAuth scope token (RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E).
func checkScope(s string) error {
	if s == "" || len(s) > maxScopeLen {
		return fmt.Errorf("a scope is 1 to %d characters", maxScopeLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return fmt.Errorf("%q is not an OAuth scope token (RFC 6749 §3.3)", clip(s))
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// clip bounds user input echoed in an error message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
