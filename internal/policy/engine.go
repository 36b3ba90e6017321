// Package policy is thingid's one decision engine: it compiles households'
// structured rules to Cedar (cedar-go, through its AST), validates
// administrators' raw Cedar policies against the schema of thingid's
// entities, and decides requests on the server's clock in the household's
// time zone. It reads no store and serves no HTTP: internal/household feeds
// it households, and every door (AuthZEN, gateway, broker) asks it.
package policy

import (
	"iter"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
	_ "time/tzdata" // households name IANA zones; a host without zoneinfo still knows them

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// Request asks whether a user may do an action with a thing. There is no
// time in it on purpose: the engine's clock and the household's zone decide.
type Request struct {
	UserID  string
	ThingID string
	Action  Action
	Scope   string // the API scope, for Gateway; "" otherwise
	// Door names the enforcement point that asks ("gateway", "authzen",
	// "oauth", "broker") for the audit record of a refusal; it changes no
	// decision.
	Door string
}

// Decision is the engine's answer and why, in words a guardian reads.
type Decision struct {
	Allowed bool
	// Rule is the id of the rule that decided: a rule's id, "guardians" for
	// the guardians' standing permission, "platform:<id>" for an
	// administrator's policy; "" when no rule applied (refused by default).
	Rule string
	// Reason says what decided, e.g. "outside the allowed times: Emma may
	// use the things in Kids' room from 07:00 to 20:00 on school days"
	// (ReasonIn says it in another language).
	Reason string
	why    text
	// Local is the household's clock when deciding.
	Local time.Time
	// Household is the household the thing belongs to, whose rules took
	// part; "" when it belongs to none and the platform's policies alone
	// decided.
	Household string
	// Until is the earliest time at which the passing of time may change
	// the decision: the next local minute at which a window of the
	// household's rules opens or closes or a day begins (every minute when
	// a platform policy reads the local time), or the zone's next change of
	// offset, whichever comes first. Zero: no rule depends on the time.
	// Changes of the rules themselves are not foreseen; they are events.
	Until time.Time
}

// Engine decides requests against compiled households and the platform's
// policies. It is safe for concurrent use.
type Engine struct {
	now      func() time.Time
	log      *slog.Logger
	platform atomic.Pointer[Platform]
}

// NewEngine returns an engine reading the time from now (time.Now when nil).
func NewEngine(now func() time.Time, log *slog.Logger) *Engine {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{now: now, log: log}
	e.platform.Store(&Platform{set: cedar.NewPolicySet()})
	return e
}

// Decide answers req within the household compiled as s. A request naming
// no user, no thing or an unknown action is a *FieldError.
func (e *Engine) Decide(s *Set, req Request) (Decision, error) {
	switch {
	case req.UserID == "":
		return Decision{}, fieldErr("subject.id", "missing")
	case req.ThingID == "":
		return Decision{}, fieldErr("resource.id", "missing")
	case !req.Action.Valid():
		return Decision{}, fieldErr("action.name", "%q is not one of use, configure, pair, mqtt.publish, mqtt.subscribe, gateway", clip(string(req.Action)))
	case req.Action != Gateway && req.Scope != "":
		return Decision{}, fieldErr("action.properties.scope", "only the gateway action takes a scope")
	}
	now := e.now().In(s.zone)
	cr := cedar.Request{
		Principal: uid(typeUser, req.UserID),
		Action:    uid(typeAction, string(req.Action)),
		Resource:  uid(typeThing, req.ThingID),
		Context: cedar.NewRecord(cedar.RecordMap{
			"local": localRecord(now),
			"scope": types.String(req.Scope),
		}),
	}
	platform := e.platform.Load()
	all := both{s.policies, platform.set}
	decision, diag := cedar.Authorize(all, s.entities, cr)
	d := Decision{Local: now, Until: s.until(now, platform.clocked)}
	if _, ok := s.entities[cr.Resource]; ok {
		d.Household = s.household
	}
	// Cedar skips a policy that fails to evaluate. A forbid that could not
	// be evaluated refuses here instead: a broken deny must not open a door.
	for _, fail := range diag.Errors {
		if p := all.get(fail.PolicyID); p != nil && p.Effect() == cedar.Forbid {
			e.log.Warn("policy: a forbid policy failed to evaluate; refusing", "policy", fail.PolicyID, "error", fail.Message)
			d.Rule = ruleOf(s, fail.PolicyID)
			d.explain("a deny rule could not be evaluated: %s", textOf(s, platform, fail.PolicyID))
			return d, nil
		}
	}
	if len(diag.Reasons) > 0 {
		decider := diag.Reasons[0].PolicyID
		d.Allowed = decision == cedar.Allow
		d.Rule = ruleOf(s, decider)
		if d.Allowed {
			d.explain("allowed: %s", textOf(s, platform, decider))
		} else {
			d.explain("denied: %s", textOf(s, platform, decider))
		}
		return d, nil
	}
	// Refused by default: if an allow rule would have applied at another
	// time, that rule is the reason a guardian wants to read.
	if _, diag := cedar.Authorize(s.untimed, s.entities, cr); len(diag.Reasons) > 0 {
		id := diag.Reasons[0].PolicyID
		d.Rule = s.rules[id]
		d.explain("outside the allowed times: %s", s.texts[id])
		return d, nil
	}
	d.why = func(tr Translate) string {
		return tr("no rule allows %s to %s %s", s.names.member(req.UserID, tr), actionVerb(req.Action, nonEmpty(req.Scope), tr), s.names.thing(req.ThingID, tr))
	}
	d.Reason = d.why(English)
	return d, nil
}

// text is what a guardian reads of a policy, in the language of tr.
type text func(tr Translate) string

// explain sets the decision's reason: format (English source text with
// one %s) around what the policy says.
func (d *Decision) explain(format string, policy text) {
	d.why = func(tr Translate) string { return tr(format, policy(tr)) }
	d.Reason = d.why(English)
}

// ReasonIn is Reason in the language of tr, for a page; the APIs answer
// Reason.
func (d Decision) ReasonIn(tr Translate) string {
	if d.why == nil {
		return d.Reason
	}
	return d.why(tr)
}

// until is the earliest time after now (in s's zone) at which a decision
// may change with the time: the next of s.minutes on the wall clock (every
// minute when everyMinute), or the end of the zone's current offset. Within
// one offset the wall clock moves with the instant, so the minute is found
// with now's offset; across a change of offset (daylight saving) the wall
// clock jumps, and the change itself is the next time to decide again: a
// window starting at 02:30 on the night the clocks skip from 02:00 to 03:00
// opens at that jump.
func (s *Set) until(now time.Time, everyMinute bool) time.Time {
	return nextChange(now, s.minutes, everyMinute)
}

// nextChange is until for any sorted local minutes of change (Set's,
// Conditions').
func nextChange(now time.Time, minutes []int, everyMinute bool) time.Time {
	if len(minutes) == 0 && !everyMinute {
		return time.Time{}
	}
	cur := now.Hour()*60 + now.Minute()
	next := cur + 1
	if !everyMinute {
		i, _ := slices.BinarySearch(minutes, next)
		if i < len(minutes) {
			next = minutes[i]
		} else {
			next = 24*60 + minutes[0] // tomorrow's first
		}
	}
	_, offset := now.Zone()
	y, m, d := now.Date()
	wall := time.Date(y, m, d, 0, next, 0, 0, time.UTC) // the wall clock, read as if it were UTC
	t := wall.Add(-time.Duration(offset) * time.Second)
	if _, end := now.ZoneBounds(); !end.IsZero() && end.Before(t) {
		return end
	}
	return t
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func ruleOf(s *Set, id cedar.PolicyID) string {
	if r, ok := s.rules[id]; ok {
		return r
	}
	if id == guardiansID {
		return string(guardiansID)
	}
	return string(id) // platform policies are "platform:<id>" already
}

func textOf(s *Set, p *Platform, id cedar.PolicyID) text {
	if t, ok := s.texts[id]; ok {
		return t
	}
	if t, ok := p.texts[id]; ok {
		return t
	}
	return func(Translate) string { return string(id) }
}

// localRecord is the household's wall clock as the schema's Local type.
// The wall clock, not elapsed time: a window "07:00 to 20:00" follows the
// clocks on the wall through daylight-saving changes, and an instant that
// exists twice (clocks going back) is inside a window both times.
func localRecord(t time.Time) types.Record {
	y, m, d := t.Date()
	return cedar.NewRecord(cedar.RecordMap{
		"weekday": types.Long(isoWeekday(t.Weekday())),
		"minute":  types.Long(t.Hour()*60 + t.Minute()),
		"date":    types.Long(y*10000 + int(m)*100 + d),
	})
}

func isoWeekday(d time.Weekday) int {
	if d == time.Sunday {
		return 7
	}
	return int(d)
}

// both iterates a household's policies and then the platform's, without
// copying either set.
type both [2]*cedar.PolicySet

func (b both) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, ps := range b {
			for id, p := range ps.All() {
				if !yield(id, p) {
					return
				}
			}
		}
	}
}

func (b both) get(id cedar.PolicyID) *cedar.Policy {
	for _, ps := range b {
		if p := ps.Get(id); p != nil {
			return p
		}
	}
	return nil
}
