package policy

import (
	"fmt"
	"slices"
	"time"
)

// Household is what the engine needs to know of a household: its clock,
// who is in it with which role, its rooms, the things placed in them, and
// the guardians' rules. internal/household builds it from the store.
type Household struct {
	ID      string
	Zone    *time.Location // the household's IANA time zone; nil is UTC
	Members []Member
	Rooms   []Room
	Things  []Thing
	Rules   []Rule
}

// Member is a user's place in a household; Name is what guardians read.
type Member struct {
	UserID string
	Name   string
	Role   Role
}

// Room is a room of the household.
type Room struct {
	ID   string
	Name string
}

// Thing is a thing placed in one of the household's rooms.
type Thing struct {
	ID     string
	Name   string
	Model  string // "" when the thing names none
	RoomID string
}

// CheckRule checks a rule a guardian is about to store: its syntax, and that
// the member, room, thing or model it names belongs to this household (a
// rule naming someone else's thing is refused, not stored to match nothing).
// field prefixes the names of wrong inputs.
func (h *Household) CheckRule(r *Rule, field string) error {
	if _, err := parseRule(r, field); err != nil {
		return err
	}
	if r.Who.Kind == OneMember && !slices.ContainsFunc(h.Members, func(m Member) bool { return m.UserID == r.Who.Member }) {
		return fieldErr(field+".who.member", "%q is not a member of this household", clip(r.Who.Member))
	}
	var known bool
	switch r.Things.Kind {
	case OneThing:
		known = slices.ContainsFunc(h.Things, func(t Thing) bool { return t.ID == r.Things.ID })
	case InRoom:
		known = slices.ContainsFunc(h.Rooms, func(rm Room) bool { return rm.ID == r.Things.ID })
	case OfModel:
		known = slices.ContainsFunc(h.Things, func(t Thing) bool { return t.Model == r.Things.ID })
	default:
		known = true
	}
	if !known {
		return fieldErr(field+".things.id", "%q is no %s of this household", clip(r.Things.ID), map[ThingsKind]string{
			OneThing: "thing placed in a room", InRoom: "room", OfModel: "model of a thing placed in a room"}[r.Things.Kind])
	}
	return nil
}

// CheckRules checks every rule with CheckRule, and their number and ids.
func (h *Household) CheckRules(rules []Rule) error {
	if len(rules) > MaxRules {
		return fieldErr("rules", "at most %d rules", MaxRules)
	}
	for i := range rules {
		if err := h.CheckRule(&rules[i], fmt.Sprintf("rules[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (h *Household) zone() *time.Location {
	if h.Zone == nil {
		return time.UTC
	}
	return h.Zone
}
