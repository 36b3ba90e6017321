package household

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/thingid/thingid/internal/policy"
)

// ruleFromForm reads the rule form of the household page: effect (allow or
// deny), who ("member:<user id>", dependants, guests, guardians, everyone),
// things (all, "room:<id>", "thing:<id>", "model:<name>"), action
// (repeated), scopes (space-separated, for the gateway action), day
// (repeated, mon … sun; none: every day), start and end (HH:MM), firstDate
// and lastDate (YYYY-MM-DD). It checks only what the form adds to a rule;
// the rule itself is checked by AddRule, whose errors ruleInput maps back
// to the form's inputs.
func ruleFromForm(f url.Values) (policy.Rule, error) {
	r := policy.Rule{Effect: policy.Effect(f.Get("effect")), Actions: []policy.Action{}, Scopes: strings.Fields(f.Get("scopes")),
		When: policy.When{Days: f["day"], Start: strings.TrimSpace(f.Get("start")), End: strings.TrimSpace(f.Get("end")),
			FirstDate: strings.TrimSpace(f.Get("firstDate")), LastDate: strings.TrimSpace(f.Get("lastDate"))}}
	for _, a := range f["action"] {
		r.Actions = append(r.Actions, policy.Action(a))
	}
	who := f.Get("who")
	switch {
	case who == "":
		return r, refuse(http.StatusBadRequest, "who.kind", "choose whom the rule is about")
	case strings.HasPrefix(who, "member:"):
		r.Who = policy.Who{Kind: policy.OneMember, Member: strings.TrimPrefix(who, "member:")}
	default:
		r.Who = policy.Who{Kind: policy.WhoKind(who)}
	}
	things := f.Get("things")
	kind, id, _ := strings.Cut(things, ":")
	switch {
	case things == "":
		return r, refuse(http.StatusBadRequest, "things.kind", "choose which things the rule is about")
	case kind == string(policy.OneThing), kind == string(policy.InRoom), kind == string(policy.OfModel):
		r.Things = policy.Things{Kind: policy.ThingsKind(kind), ID: id}
	default:
		r.Things = policy.Things{Kind: policy.ThingsKind(things)}
	}
	return r, nil
}

// ruleInput maps the field of a refused rule (as AddRule names it) to the
// input of the rule form; "" for none.
func ruleInput(field string) string {
	head, _, _ := strings.Cut(field, "[")
	switch head {
	case "effect", "actions", "scopes":
		return map[string]string{"effect": "effect", "actions": "action", "scopes": "scopes"}[head]
	case "who.kind", "who.member":
		return "who"
	case "things.kind", "things.id":
		return "things"
	case "when.days":
		return "day"
	case "when.start", "when.end", "when.firstDate", "when.lastDate":
		return strings.TrimPrefix(head, "when.")
	}
	return ""
}
