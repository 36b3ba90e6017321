package household

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/policy"
)

// sample is a household for the rule form's checks.
var sample = policy.Household{ID: "h", Members: []policy.Member{{UserID: "emma", Name: "Emma", Role: policy.Dependant}},
	Rooms: []policy.Room{{ID: "kids", Name: "Kids' room"}}, Things: []policy.Thing{{ID: "speaker", Name: "Speaker", Model: "Echo 3", RoomID: "kids"}}}

// formField checks form as AddRule would and returns the input its
// refusal lands at ("" when it is accepted).
func formField(t *testing.T, form url.Values) string {
	t.Helper()
	r, err := ruleFromForm(form)
	if err == nil {
		err = sample.CheckRules([]policy.Rule{r})
	}
	var e *Error
	var fe *policy.FieldError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return ruleInput(e.Field)
	case errors.As(err, &fe):
		return ruleInput(strings.TrimPrefix(fe.Field, "rules[0]."))
	}
	t.Fatalf("%v: %v", form, err)
	return ""
}

func TestRuleForm(t *testing.T) {
	good := url.Values{"effect": {"allow"}, "who": {"member:emma"}, "action": {"use", "pair"}, "things": {"room:kids"},
		"day": {"mon", "fri"}, "start": {"07:00"}, "end": {"20:00"}, "firstDate": {"2025-03-01"}, "lastDate": {"2025-03-31"}}
	r, err := ruleFromForm(good)
	if err != nil || r.Who != (policy.Who{Kind: policy.OneMember, Member: "emma"}) || r.Things != (policy.Things{Kind: policy.InRoom, ID: "kids"}) ||
		len(r.Actions) != 2 || r.When.Start != "07:00" || len(r.When.Days) != 2 || r.When.LastDate != "2025-03-31" {
		t.Fatalf("%+v, %v", r, err)
	}
	with := func(name string, values ...string) url.Values {
		f := url.Values{}
		for k, v := range good {
			f[k] = v
		}
		if values == nil {
			f.Del(name)
		} else {
			f[name] = values
		}
		return f
	}
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{good, ""},
		{with("effect", "maybe"), "effect"},
		{with("who"), "who"},
		{with("who", "member:eve"), "who"},
		{with("who", "neighbours"), "who"},
		{with("things"), "things"},
		{with("things", "room:garage"), "things"},
		{with("things", "thing:"), "things"},
		{with("things", "bogus:x"), "things"},
		{with("things", "model:Echo 3"), ""},
		{with("action"), "action"},
		{with("action", "fly"), "action"},
		{with("scopes", "read"), "scopes"},
		{with("day", "someday"), "day"},
		{with("start", "7pm"), "start"},
		{with("end"), "end"},
		{with("end", "25:00"), "end"},
		{with("firstDate", "yesterday"), "firstDate"},
		{with("lastDate", "2025-02-01"), "lastDate"},
	} {
		if got := formField(t, tc.form); got != tc.want {
			t.Errorf("%v: refused at %q, want %q", tc.form, got, tc.want)
		}
	}
}

// Whatever a browser (or anyone) posts, the rule form never panics, and a
// refusal always lands at one of its inputs.
func FuzzRuleForm(f *testing.F) {
	for _, seed := range []string{
		"effect=allow&who=member%3Aemma&action=use&things=room%3Akids&start=07%3A00&end=20%3A00",
		"effect=deny&who=dependants&action=configure&things=all",
		"effect=allow&who=everyone&action=gateway&scopes=read+write&things=model%3AEcho+3&day=sat&day=sun",
		"who=member%3A&things=thing%3A&action=&day=mon&day=mon&start=24%3A00&end=00%3A00",
		"effect=allow&who=guests&action=use&things=thing%3Aspeaker&firstDate=2025-03-01&lastDate=2025-02-01",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := ruleFromForm(form)
		if err == nil {
			err = sample.CheckRules([]policy.Rule{r})
		}
		if err == nil {
			return
		}
		var e *Error
		var fe *policy.FieldError
		field := ""
		switch {
		case errors.As(err, &e):
			field = e.Field
		case errors.As(err, &fe):
			field = strings.TrimPrefix(fe.Field, "rules[0].")
		default:
			t.Fatalf("%q: an error of no field: %v", raw, err)
		}
		if ruleInput(field) == "" {
			t.Fatalf("%q: refused at %q, which is no input of the form: %v", raw, field, err)
		}
	})
}
