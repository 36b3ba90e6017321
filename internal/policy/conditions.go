package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
)

// Conditions are a When standing on its own in a time zone: the times a UMA
// share holds. They compile to one Cedar permit over the same context.local
// as a household's rules, and the engine decides them on its clock with the
// same boundaries (Decision.Until), so that a share and a rule that say
// "07:00 to 20:00 on school days" mean the same minutes. Immutable.
type Conditions struct {
	zone     *time.Location
	policies *cedar.PolicySet
	minutes  []int
	when     When
}

// conditionsID is the one policy of compiled Conditions.
const conditionsID cedar.PolicyID = "conditions"

// CompileConditions checks w (field prefixes the names of wrong inputs, as
// in "conditions.start") and compiles it for zone (nil is UTC).
func CompileConditions(w When, zone *time.Location, field string) (*Conditions, error) {
	win, err := w.parse(field)
	if err != nil {
		return nil, err
	}
	if zone == nil {
		zone = time.UTC
	}
	c := &Conditions{zone: zone, policies: cedar.NewPolicySet(), minutes: win.boundaries(), when: w}
	slices.Sort(c.minutes)
	c.minutes = slices.Compact(c.minutes)
	p := ast.Annotation("id", types.String(conditionsID)).Permit()
	if cond, ok := win.condition(); ok {
		p = p.When(cond)
	}
	if err := add(c.policies, conditionsID, p); err != nil {
		return nil, err
	}
	return c, nil
}

// Describe is the conditions as their owner reads them, e.g. "from 07:00 to
// 20:00 on school days (Europe/Berlin)"; "always" when they limit nothing.
func (c *Conditions) Describe() string { return c.DescribeIn(English) }

// DescribeIn is Describe in the language of tr.
func (c *Conditions) DescribeIn(tr Translate) string {
	text := strings.TrimPrefix(describeWhen(c.when, tr), " ")
	if text == "" {
		return tr("always")
	}
	return tr("%s (%s)", text, c.zone.String())
}

// Within decides whether the engine's clock, in c's zone, is inside c. The
// Decision's Rule is "conditions"; its Until is the next local minute at
// which c may change its answer (or the zone's next change of offset), zero
// when c limits nothing.
func (e *Engine) Within(c *Conditions) Decision {
	now := e.now().In(c.zone)
	req := cedar.Request{
		Principal: uid(typeUser, ""),
		Action:    uid(typeAction, string(Use)),
		Resource:  uid(typeThing, ""),
		Context: cedar.NewRecord(cedar.RecordMap{
			"local": localRecord(now),
			"scope": types.String(""),
		}),
	}
	decision, _ := cedar.Authorize(c.policies, cedar.EntityMap{}, req)
	d := Decision{Allowed: decision == cedar.Allow, Rule: string(conditionsID), Local: now, Until: nextChange(now, c.minutes, false)}
	if d.Allowed {
		d.explain("within the share's times: %s", c.DescribeIn)
	} else {
		d.explain("outside the share's times: %s", c.DescribeIn)
	}
	return d
}

// LoadZone accepts the name of an IANA time zone ("Europe/Berlin", "UTC"),
// and neither "" nor "Local" (the server's own zone, which no household or
// share means).
func LoadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || len(name) > maxRefLen {
		return nil, fmt.Errorf("name an IANA time zone, e.g. Europe/Berlin")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone, e.g. Europe/Berlin", clip(name))
	}
	return loc, nil
}
