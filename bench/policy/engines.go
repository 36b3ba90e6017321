package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/thingid/thingid/bench/internal/loopback"
	"github.com/thingid/thingid/internal/policy"
)

// engines decides the sample with both engines, checks they agree, and
// prints decisions per CPU second of each and their ratio.
func engines() error {
	h := benchHousehold()
	set, err := policy.Compile(h)
	if err != nil {
		return err
	}
	reqs := sample(h, *samples)
	var at time.Time
	cedar := policy.NewEngine(func() time.Time { return at }, nil)
	ctx := context.Background()
	query, err := rego.New(rego.Query("data.household.decision"), rego.Module("household.rego", regoModule(h)),
		rego.Store(regoData(h))).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("OPA: %w", err)
	}
	opa := func(q request) (bool, error) {
		rs, err := query.Eval(ctx, rego.EvalInput(regoInput(q, h)))
		if err != nil {
			return false, err
		}
		if len(rs) != 1 || len(rs[0].Expressions) != 1 {
			return false, fmt.Errorf("OPA answered %v", rs)
		}
		return rs[0].Expressions[0].Value.(map[string]any)["allow"].(bool), nil
	}
	allowed, mismatches := 0, 0
	for _, q := range reqs {
		at = q.at
		d, err := cedar.Decide(set, q.Request)
		if err != nil {
			return err
		}
		o, err := opa(q)
		if err != nil {
			return err
		}
		if d.Allowed != o {
			mismatches++
			if mismatches <= 5 {
				fmt.Printf("  disagreement: %+v at %s: cedar %v (%s), OPA %v\n", q.Request, q.at.Format(time.DateTime), d.Allowed, d.Reason, o)
			}
		}
		if d.Allowed {
			allowed++
		}
	}
	fmt.Printf("\nDecisions: %d rules, %d requests (%d allowed); Cedar and OPA disagree on %d\n", len(h.Rules), len(reqs), allowed, mismatches)
	if mismatches > 0 {
		return fmt.Errorf("the engines disagree on %d requests", mismatches)
	}
	rate := func(name string, decide func(request) error) (float64, error) {
		cpu := loopback.CPUTime([]int{os.Getpid()})
		start, done := time.Now(), 0
		for time.Since(start) < *dur {
			for _, q := range reqs[:min(len(reqs), 1000)] {
				if err := decide(q); err != nil {
					return 0, err
				}
			}
			done += min(len(reqs), 1000)
			reqs = append(reqs[1000%len(reqs):], reqs[:1000%len(reqs)]...)
		}
		wall, used := time.Since(start), loopback.CPUTime([]int{os.Getpid()})-cpu
		perCPU := float64(done) / used.Seconds()
		fmt.Printf("  %-26s %9.0f decisions/s on one goroutine, %9.0f per CPU second, %6.2f µs each\n", name, float64(done)/wall.Seconds(), perCPU, 1e6/perCPU)
		return perCPU, nil
	}
	c, err := rate("thingid (cedar-go v1.9)", func(q request) error {
		at = q.at
		_, err := cedar.Decide(set, q.Request)
		return err
	})
	if err != nil {
		return err
	}
	o, err := rate("OPA v1.22 (rego, prepared)", func(q request) error {
		_, err := opa(q)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("  ratio thingid/OPA: %.2fx (target at least 1.0)\n", c/o)
	return nil
}

// regoData is the household as OPA data: each member's role, each thing's
// room and model.
func regoData(h *policy.Household) storage.Store {
	members, things := map[string]any{}, map[string]any{}
	for _, m := range h.Members {
		members[m.UserID] = string(m.Role)
	}
	for _, t := range h.Things {
		things[t.ID] = map[string]any{"room": t.RoomID, "model": t.Model}
	}
	return inmem.NewFromObject(map[string]any{"members": members, "things": things})
}

// regoInput is what the server computes for a request: the household's
// local weekday (ISO), minute and date, as for Cedar's context.
func regoInput(q request, h *policy.Household) map[string]any {
	t := q.at.In(h.Zone)
	wd := int(t.Weekday())
	if wd == 0 {
		wd = 7
	}
	y, m, d := t.Date()
	return map[string]any{"user": q.UserID, "thing": q.ThingID, "action": string(q.Action), "scope": q.Scope,
		"local": map[string]any{"weekday": wd, "minute": t.Hour()*60 + t.Minute(), "date": y*10000 + int(m)*100 + d}}
}

// regoModule writes h's rules in Rego, one rule body per rule as the
// compiler makes one Cedar policy per rule: the same who, things, actions
// (use covering the MQTT actions), window (a window across midnight in its
// two halves) and dates, and deny overriding allow. The ids are the
// benchmark's own, so printing them into source is safe here.
func regoModule(h *policy.Household) string {
	var b strings.Builder
	b.WriteString(`package household

member := data.members[input.user]
thing := data.things[input.thing]

acts(set) if input.action in set
acts(set) if {
	"use" in set
	input.action in {"mqtt.publish", "mqtt.subscribe"}
}

permit contains "guardians" if {
	member == "guardian"
	thing
}

allow if {
	count(permit) > 0
	count(forbid) == 0
}

default allow := false

decision := {"allow": allow, "permit": permit, "forbid": forbid}
`)
	days := []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	isoSet := func(names []string, shift int) string {
		var n []string
		for _, d := range names {
			n = append(n, strconv.Itoa((slices.Index(days, d)+shift)%7+1))
		}
		return "{" + strings.Join(n, ", ") + "}"
	}
	minute := func(s string) int {
		hh, _ := strconv.Atoi(s[:2])
		mm, _ := strconv.Atoi(s[3:])
		return hh*60 + mm
	}
	for i, r := range h.Rules {
		head := "permit"
		if r.Effect == policy.Deny {
			head = "forbid"
		}
		var conds []string
		switch r.Who.Kind {
		case policy.OneMember:
			conds = append(conds, fmt.Sprintf("input.user == %q", r.Who.Member), "member")
		case policy.Dependants:
			conds = append(conds, `member == "dependant"`)
		case policy.Guests:
			conds = append(conds, `member == "guest"`)
		case policy.Guardians:
			conds = append(conds, `member == "guardian"`)
		case policy.Everyone:
			conds = append(conds, "member")
		}
		switch r.Things.Kind {
		case policy.OneThing:
			conds = append(conds, fmt.Sprintf("input.thing == %q", r.Things.ID), "thing")
		case policy.InRoom:
			conds = append(conds, fmt.Sprintf("thing.room == %q", r.Things.ID))
		case policy.OfModel:
			conds = append(conds, fmt.Sprintf("thing.model == %q", r.Things.ID))
		case policy.AllThings:
			conds = append(conds, "thing")
		}
		acts := make([]string, len(r.Actions))
		for j, a := range r.Actions {
			acts[j] = strconv.Quote(string(a))
		}
		conds = append(conds, "acts({"+strings.Join(acts, ", ")+"})")
		w := r.When
		if w.FirstDate != "" {
			conds = append(conds, "input.local.date >= "+strings.ReplaceAll(w.FirstDate, "-", ""))
		}
		if w.LastDate != "" {
			conds = append(conds, "input.local.date <= "+strings.ReplaceAll(w.LastDate, "-", ""))
		}
		switch {
		case w.Start == "" && len(w.Days) > 0:
			conds = append(conds, "input.local.weekday in "+isoSet(w.Days, 0))
		case w.Start != "" && minute(w.Start) < minute(w.End):
			if len(w.Days) > 0 {
				conds = append(conds, "input.local.weekday in "+isoSet(w.Days, 0))
			}
			conds = append(conds, fmt.Sprintf("input.local.minute >= %d", minute(w.Start)), fmt.Sprintf("input.local.minute < %d", minute(w.End)))
		case w.Start != "": // across midnight: the evening of a listed day, the morning after it
			win := fmt.Sprintf("window_%d", i)
			evening, morning := fmt.Sprintf("input.local.minute >= %d", minute(w.Start)), fmt.Sprintf("input.local.minute < %d", minute(w.End))
			if len(w.Days) > 0 {
				evening = "input.local.weekday in " + isoSet(w.Days, 0) + "\n\t" + evening
				morning = "input.local.weekday in " + isoSet(w.Days, 1) + "\n\t" + morning
			}
			fmt.Fprintf(&b, "\n%s if {\n\t%s\n}\n\n%s if {\n\t%s\n}\n", win, evening, win, morning)
			conds = append(conds, win)
		}
		fmt.Fprintf(&b, "\n%s contains %q if {\n\t%s\n}\n", head, r.ID, strings.Join(conds, "\n\t"))
	}
	return b.String()
}
