package policy

import (
	"fmt"
	"maps"
	"slices"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// guardiansID is the policy every household has: its guardians may do
// everything with its things (a guardian's deny rule still overrides it).
const guardiansID cedar.PolicyID = "guardians"

// Set is a household compiled: its rules as Cedar policies, its members,
// rooms and things as Cedar entities, and what a guardian reads of each
// rule. It is immutable; a change of the household compiles a new one.
type Set struct {
	household string // "" for the set of things in no household
	zone      *time.Location
	policies  *cedar.PolicySet
	// untimed holds each allow rule without its When, to explain a refusal
	// by the window it fell outside of.
	untimed  *cedar.PolicySet
	entities cedar.EntityMap
	rules    map[cedar.PolicyID]string // policy → the rule's id
	texts    map[cedar.PolicyID]text   // policy → the rule as a guardian reads it
	names    names
	// minutes are the local minutes of the day (sorted, 0 to 1439) at which
	// a rule's window opens or closes, or its days or dates change (0,
	// midnight): between two of them no decision changes with the time.
	minutes []int
}

// Compile turns h into a Set. It checks each rule's syntax but not that what
// it names still exists: a stored rule whose thing has left the household
// simply matches nothing. Each compiled policy is validated against the
// schema; a failure there is a bug of this compiler, reported as an error.
func Compile(h *Household) (*Set, error) {
	nm := namesOf(h)
	s := &Set{
		household: h.ID,
		zone:      h.zone(),
		policies:  cedar.NewPolicySet(),
		untimed:   cedar.NewPolicySet(),
		entities:  entitiesOf(h),
		rules:     map[cedar.PolicyID]string{},
		texts:     map[cedar.PolicyID]text{},
		names:     nm,
	}
	hh := uid(typeHousehold, h.ID)
	guardians := ast.Annotation("id", types.String(guardiansID)).Permit().
		PrincipalIn(uid(typeRole, string(Guardian))).
		ResourceIn(hh)
	if err := add(s.policies, guardiansID, guardians); err != nil {
		return nil, err
	}
	s.texts[guardiansID] = func(tr Translate) string { return tr("guardians may do everything with the household's things") }
	if len(h.Rules) > MaxRules {
		return nil, fieldErr("rules", "at most %d rules", MaxRules)
	}
	for i := range h.Rules {
		r := &h.Rules[i]
		field := fmt.Sprintf("rules[%d]", i)
		w, err := parseRule(r, field)
		if err != nil {
			return nil, err
		}
		if err := checkRef(r.ID, field+".id"); err != nil {
			return nil, err
		}
		id := cedar.PolicyID("rule:" + r.ID)
		if _, dup := s.rules[id]; dup {
			return nil, fieldErr(field+".id", "%q is the id of an earlier rule", clip(r.ID))
		}
		if err := add(s.policies, id, compileRule(h.ID, r, w, true)); err != nil {
			return nil, err
		}
		if r.Effect == Allow {
			if err := add(s.untimed, id, compileRule(h.ID, r, w, false)); err != nil {
				return nil, err
			}
		}
		s.rules[id] = r.ID
		rule := *r
		s.texts[id] = func(tr Translate) string { return nm.describe(&rule, tr) }
		s.minutes = append(s.minutes, w.boundaries()...)
	}
	slices.Sort(s.minutes)
	s.minutes = slices.Compact(s.minutes)
	return s, nil
}

// boundaries are the local minutes at which w's condition may change.
func (w window) boundaries() []int {
	var m []int
	if w.start >= 0 {
		m = append(m, w.start, w.end%(24*60))
	}
	if w.days != nil || w.firstDate != 0 || w.lastDate != 0 {
		m = append(m, 0)
	}
	return m
}

// Holds reports whether thingID is one of the household's things.
func (s *Set) Holds(thingID string) bool {
	_, ok := s.entities[uid(typeThing, thingID)]
	return ok
}

// Newcomer returns s with t among the household's things although it is in
// none of its rooms: a thing about to be paired, which rules about every
// thing of the household, or about t's model, speak of. s is unchanged.
func (s *Set) Newcomer(t Thing) *Set {
	c := *s
	c.entities = maps.Clone(s.entities)
	c.names.things = maps.Clone(s.names.things)
	hh := uid(typeHousehold, s.household)
	parents := []types.EntityUID{hh}
	if t.Model != "" {
		mu := uid(typeModel, t.Model)
		if _, ok := c.entities[mu]; !ok {
			c.entities[mu] = cedar.Entity{UID: mu}
		}
		parents = append(parents, mu)
	}
	u := uid(typeThing, t.ID)
	c.entities[u] = cedar.Entity{UID: u, Parents: cedar.NewEntityUIDSet(parents...)}
	c.names.things[t.ID] = t.Name
	return &c
}

// add validates p against the schema and adds it to ps as id.
func add(ps *cedar.PolicySet, id cedar.PolicyID, p *ast.Policy) error {
	if err := validator.Policy(string(id), (*xast.Policy)(p)); err != nil {
		return fmt.Errorf("policy: compiled policy %s fails the schema: %w", id, err)
	}
	ps.Add(id, cedar.NewPolicyFromAST(p))
	return nil
}

// compileRule builds r's policy through the AST; ids enter only as entity
// ids and strings, never as source text. timed=false leaves r.When out.
func compileRule(household string, r *Rule, w window, timed bool) *ast.Policy {
	var p *ast.Policy
	if r.Effect == Deny {
		p = ast.Annotation("id", types.String(r.ID)).Forbid()
	} else {
		p = ast.Annotation("id", types.String(r.ID)).Permit()
	}
	switch r.Who.Kind {
	case OneMember:
		p = p.PrincipalEq(uid(typeUser, r.Who.Member))
	case Dependants:
		p = p.PrincipalIn(uid(typeRole, string(Dependant)))
	case Guests:
		p = p.PrincipalIn(uid(typeRole, string(Guest)))
	case Guardians:
		p = p.PrincipalIn(uid(typeRole, string(Guardian)))
	case Everyone:
		p = p.PrincipalIn(uid(typeHousehold, household))
	}
	// "in", not "==": a rule about use covers the MQTT actions, which the
	// schema places in use.
	actions := make([]types.EntityUID, len(r.Actions))
	for i, a := range r.Actions {
		actions[i] = uid(typeAction, string(a))
	}
	p = p.ActionInSet(actions...)
	switch r.Things.Kind {
	case OneThing:
		p = p.ResourceEq(uid(typeThing, r.Things.ID))
	case InRoom:
		p = p.ResourceIn(uid(typeRoom, r.Things.ID))
	case OfModel:
		p = p.ResourceIn(uid(typeModel, r.Things.ID))
	case AllThings:
		p = p.ResourceIn(uid(typeHousehold, household))
	}
	// Whatever the scope says, a rule only ever speaks of this household's
	// members and things.
	hh := ast.EntityUID(typeHousehold, types.String(household))
	cond := ast.Principal().In(hh).And(ast.Resource().In(hh))
	if len(r.Scopes) > 0 {
		scopes := make([]ast.Node, len(r.Scopes))
		for i, sc := range r.Scopes {
			scopes[i] = ast.String(sc)
		}
		cond = cond.And(ast.Action().NotEqual(ast.EntityUID(typeAction, types.String(Gateway))).
			Or(ast.Set(scopes...).Contains(ast.Context().Access("scope"))))
	}
	if timed {
		if t, ok := w.condition(); ok {
			cond = cond.And(t)
		}
	}
	return p.When(cond)
}

// condition is w as a Cedar expression over context.local, or false when w
// is always.
func (w window) condition() (ast.Node, bool) {
	local := ast.Context().Access("local")
	weekday, minute, date := local.Access("weekday"), local.Access("minute"), local.Access("date")
	var conds []ast.Node
	onDays := func(days []int) ast.Node {
		set := make([]ast.Node, len(days))
		for i, d := range days {
			set[i] = ast.Long(d)
		}
		return ast.Set(set...).Contains(weekday)
	}
	switch {
	case w.start < 0 && w.days != nil:
		conds = append(conds, onDays(w.days))
	case w.start >= 0 && w.start < w.end:
		in := minute.GreaterThanOrEqual(ast.Long(w.start)).And(minute.LessThan(ast.Long(w.end)))
		if w.days != nil {
			in = onDays(w.days).And(in)
		}
		conds = append(conds, in)
	case w.start >= 0: // across midnight: the evening of a listed day, the morning after it
		evening, morning := minute.GreaterThanOrEqual(ast.Long(w.start)), minute.LessThan(ast.Long(w.end))
		if w.days != nil {
			next := make([]int, len(w.days))
			for i, d := range w.days {
				next[i] = d%7 + 1
			}
			evening, morning = onDays(w.days).And(evening), onDays(next).And(morning)
		}
		conds = append(conds, evening.Or(morning))
	}
	if w.firstDate != 0 {
		conds = append(conds, date.GreaterThanOrEqual(ast.Long(w.firstDate)))
	}
	if w.lastDate != 0 {
		conds = append(conds, date.LessThanOrEqual(ast.Long(w.lastDate)))
	}
	if len(conds) == 0 {
		return ast.Node{}, false
	}
	c := conds[0]
	for _, more := range conds[1:] {
		c = c.And(more)
	}
	return c, true
}

// entitiesOf is h as Cedar entities: members in the household and in their
// role, rooms in the household, things in their room, model and household.
func entitiesOf(h *Household) cedar.EntityMap {
	hh := uid(typeHousehold, h.ID)
	m := cedar.EntityMap{hh: {UID: hh}}
	for _, r := range []Role{Guardian, Dependant, Guest} {
		m[uid(typeRole, string(r))] = cedar.Entity{UID: uid(typeRole, string(r))}
	}
	// The action hierarchy of the schema, which "action in" reads.
	use := uid(typeAction, string(Use))
	for _, a := range Actions {
		e := cedar.Entity{UID: uid(typeAction, string(a))}
		if a == Publish || a == Subscribe {
			e.Parents = cedar.NewEntityUIDSet(use)
		}
		m[e.UID] = e
	}
	for _, mb := range h.Members {
		u := uid(typeUser, mb.UserID)
		m[u] = cedar.Entity{UID: u, Parents: cedar.NewEntityUIDSet(hh, uid(typeRole, string(mb.Role)))}
	}
	for _, r := range h.Rooms {
		u := uid(typeRoom, r.ID)
		m[u] = cedar.Entity{UID: u, Parents: cedar.NewEntityUIDSet(hh)}
	}
	for _, t := range h.Things {
		u := uid(typeThing, t.ID)
		parents := []types.EntityUID{hh, uid(typeRoom, t.RoomID)}
		if t.Model != "" {
			mu := uid(typeModel, t.Model)
			m[mu] = cedar.Entity{UID: mu}
			parents = append(parents, mu)
		}
		m[u] = cedar.Entity{UID: u, Parents: cedar.NewEntityUIDSet(parents...)}
	}
	return m
}

func uid(typ, id string) types.EntityUID {
	return types.NewEntityUID(types.EntityType(typ), types.String(id))
}
