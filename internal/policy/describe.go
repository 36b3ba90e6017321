package policy

import (
	"fmt"
	"slices"
	"strings"
)

// names are the words a guardian knows the household's ids by.
type names struct {
	members, rooms, things map[string]string
}

func namesOf(h *Household) names {
	n := names{members: map[string]string{}, rooms: map[string]string{}, things: map[string]string{}}
	for _, m := range h.Members {
		n.members[m.UserID] = m.Name
	}
	for _, r := range h.Rooms {
		n.rooms[r.ID] = r.Name
	}
	for _, t := range h.Things {
		n.things[t.ID] = t.Name
	}
	return n
}

func (n names) member(id string) string {
	if s, ok := n.members[id]; ok && s != "" {
		return s
	}
	return "a former member"
}

func (n names) thing(id string) string {
	if s, ok := n.things[id]; ok && s != "" {
		return s
	}
	return "a thing no longer in the household"
}

// Describe renders r as a guardian reads it, for example "Emma may use the
// things in Kids' room from 07:00 to 20:00 on school days". r must be
// valid (CheckRule).
func (h *Household) Describe(r *Rule) string { return namesOf(h).describe(r) }

func (n names) describe(r *Rule) string {
	var b strings.Builder
	switch r.Who.Kind {
	case OneMember:
		b.WriteString(n.member(r.Who.Member))
	default:
		b.WriteString(string(r.Who.Kind))
	}
	if r.Effect == Deny {
		b.WriteString(" may not ")
	} else {
		b.WriteString(" may ")
	}
	verbs := make([]string, len(r.Actions))
	for i, a := range r.Actions {
		verbs[i] = actionVerb(a, r.Scopes)
	}
	b.WriteString(joinAnd(verbs, "or"))
	b.WriteByte(' ')
	switch r.Things.Kind {
	case OneThing:
		b.WriteString(n.thing(r.Things.ID))
	case InRoom:
		room, ok := n.rooms[r.Things.ID]
		if !ok {
			room = "a removed room"
		}
		b.WriteString("the things in " + room)
	case OfModel:
		b.WriteString("the things of model " + r.Things.ID)
	case AllThings:
		b.WriteString("every thing of the household")
	}
	b.WriteString(describeWhen(r.When))
	return b.String()
}

func actionVerb(a Action, scopes []string) string {
	switch a {
	case Publish:
		return "publish over MQTT to"
	case Subscribe:
		return "subscribe over MQTT to"
	case Gateway:
		if len(scopes) == 0 {
			return "call any API through the gateway for"
		}
		return fmt.Sprintf("call the gateway with scope %s for", joinAnd(scopes, "or"))
	}
	return string(a)
}

var dayWords = []string{"Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays"}

func describeWhen(w When) string {
	var b strings.Builder
	if w.Start != "" {
		fmt.Fprintf(&b, " from %s to %s", w.Start, w.End)
	}
	if len(w.Days) > 0 {
		idx := make([]int, 0, len(w.Days))
		for _, d := range w.Days {
			idx = append(idx, slices.Index(dayNames, d))
		}
		slices.Sort(idx)
		switch {
		case slices.Equal(idx, []int{0, 1, 2, 3, 4}):
			b.WriteString(" on school days")
		case slices.Equal(idx, []int{5, 6}):
			b.WriteString(" on weekends")
		case len(idx) == 7:
			b.WriteString(" every day")
		default:
			words := make([]string, len(idx))
			for i, d := range idx {
				words[i] = dayWords[d]
			}
			b.WriteString(" on " + joinAnd(words, "and"))
		}
	}
	switch {
	case w.FirstDate != "" && w.LastDate != "":
		fmt.Fprintf(&b, " from %s until %s", w.FirstDate, w.LastDate)
	case w.FirstDate != "":
		fmt.Fprintf(&b, " from %s on", w.FirstDate)
	case w.LastDate != "":
		fmt.Fprintf(&b, " until %s", w.LastDate)
	}
	return b.String()
}

// joinAnd joins words as "a, b and c" (or "a, b or c").
func joinAnd(words []string, conj string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + conj + " " + words[len(words)-1]
}
