package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Translate is a message catalogue's translation of English source text
// with args in place of its verbs (ui.Kit.Translator); English is
// fmt.Sprintf. The words of Describe go through it, so that a page shows a
// rule in its reader's language.
type Translate func(src string, args ...any) string

// English is the source text itself.
var English Translate = fmt.Sprintf

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

func (n names) member(id string, tr Translate) string {
	if s, ok := n.members[id]; ok && s != "" {
		return s
	}
	return tr("a former member")
}

func (n names) thing(id string, tr Translate) string {
	if s, ok := n.things[id]; ok && s != "" {
		return s
	}
	return tr("a thing no longer in the household")
}

// Describe renders r as a guardian reads it, for example "Emma may use the
// things in Kids' room from 07:00 to 20:00 on school days". r must be
// valid (CheckRule).
func (h *Household) Describe(r *Rule) string { return namesOf(h).describe(r, English) }

// DescribeIn is Describe in the language of tr.
func (h *Household) DescribeIn(r *Rule, tr Translate) string { return namesOf(h).describe(r, tr) }

// sentences are a rule's sentence by whom it is about and its effect: the
// subject, the verbs, the things and the times (languages that conjugate
// "may" for a plural, or put the verb last, need the whole sentence).
var sentences = map[WhoKind][2]string{
	OneMember:  {"%s may %s %s%s", "%s may not %s %s%s"},
	Dependants: {"dependants may %[2]s %[3]s%[4]s", "dependants may not %[2]s %[3]s%[4]s"},
	Guests:     {"guests may %[2]s %[3]s%[4]s", "guests may not %[2]s %[3]s%[4]s"},
	Guardians:  {"guardians may %[2]s %[3]s%[4]s", "guardians may not %[2]s %[3]s%[4]s"},
	Everyone:   {"everyone may %[2]s %[3]s%[4]s", "everyone may not %[2]s %[3]s%[4]s"},
}

func (n names) describe(r *Rule, tr Translate) string {
	who := ""
	if r.Who.Kind == OneMember {
		who = n.member(r.Who.Member, tr)
	}
	verbs := make([]string, len(r.Actions))
	for i, a := range r.Actions {
		verbs[i] = actionVerb(a, r.Scopes, tr)
	}
	var things string
	switch r.Things.Kind {
	case OneThing:
		things = n.thing(r.Things.ID, tr)
	case InRoom:
		room, ok := n.rooms[r.Things.ID]
		if !ok {
			room = tr("a removed room")
		}
		things = tr("the things in %s", room)
	case OfModel:
		things = tr("the things of model %s", r.Things.ID)
	case AllThings:
		things = tr("every thing of the household")
	}
	effect := 0
	if r.Effect == Deny {
		effect = 1
	}
	return tr(sentences[r.Who.Kind][effect], who, joinAnd(verbs, tr("or")), things, describeWhen(r.When, tr))
}

func actionVerb(a Action, scopes []string, tr Translate) string {
	switch a {
	case Publish:
		return tr("publish over MQTT to")
	case Subscribe:
		return tr("subscribe over MQTT to")
	case Gateway:
		if len(scopes) == 0 {
			return tr("call any API through the gateway for")
		}
		return tr("call the gateway with scope %s for", joinAnd(scopes, tr("or")))
	}
	return tr(string(a))
}

var dayWords = []string{"Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays"}

// describeWhen is w in words, each part after a space (" from 07:00 to
// 20:00 on school days"); "" when w limits nothing.
func describeWhen(w When, tr Translate) string {
	var b strings.Builder
	if w.Start != "" {
		b.WriteString(" " + tr("from %s to %s", w.Start, w.End))
	}
	if len(w.Days) > 0 {
		idx := make([]int, 0, len(w.Days))
		for _, d := range w.Days {
			idx = append(idx, slices.Index(dayNames, d))
		}
		slices.Sort(idx)
		switch {
		case slices.Equal(idx, []int{0, 1, 2, 3, 4}):
			b.WriteString(" " + tr("on school days"))
		case slices.Equal(idx, []int{5, 6}):
			b.WriteString(" " + tr("on weekends"))
		case len(idx) == 7:
			b.WriteString(" " + tr("every day"))
		default:
			words := make([]string, len(idx))
			for i, d := range idx {
				words[i] = tr(dayWords[d])
			}
			b.WriteString(" " + tr("on %s", joinAnd(words, tr("and"))))
		}
	}
	switch {
	case w.FirstDate != "" && w.LastDate != "":
		b.WriteString(" " + tr("from %s until %s", w.FirstDate, w.LastDate))
	case w.FirstDate != "":
		b.WriteString(" " + tr("from %s on", w.FirstDate))
	case w.LastDate != "":
		b.WriteString(" " + tr("until %s", w.LastDate))
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
