package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/thingid/thingid/internal/policy"
)

// benchHousehold is the household both engines decide for: 2 guardians, 3
// dependants, 2 guests, 5 rooms, 24 things of 3 models, 16 rules.
func benchHousehold() *policy.Household {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	h := &policy.Household{ID: "hh-bench", Zone: berlin}
	for i, r := range []policy.Role{policy.Guardian, policy.Guardian, policy.Dependant, policy.Dependant, policy.Dependant, policy.Guest, policy.Guest} {
		h.Members = append(h.Members, policy.Member{UserID: fmt.Sprintf("u%d", i), Name: fmt.Sprintf("Member %d", i), Role: r})
	}
	rooms := []string{"kids", "living", "kitchen", "office", "garden"}
	for _, r := range rooms {
		h.Rooms = append(h.Rooms, policy.Room{ID: r, Name: r})
	}
	models := []string{"speaker-3", "lamp-1", "thermo-2"}
	for i := range 24 {
		h.Things = append(h.Things, policy.Thing{ID: fmt.Sprintf("t%d", i), Name: fmt.Sprintf("Thing %d", i), Model: models[i%3], RoomID: rooms[i%5]})
	}
	school := []string{"mon", "tue", "wed", "thu", "fri"}
	weekend := []string{"sat", "sun"}
	use, sub, pub, conf := policy.Use, policy.Subscribe, policy.Publish, policy.Configure
	rule := func(id string, eff policy.Effect, who policy.Who, th policy.Things, acts []policy.Action, w policy.When) policy.Rule {
		return policy.Rule{ID: id, Effect: eff, Who: who, Things: th, Actions: acts, When: w}
	}
	member := func(i int) policy.Who { return policy.Who{Kind: policy.OneMember, Member: fmt.Sprintf("u%d", i)} }
	room := func(r string) policy.Things { return policy.Things{Kind: policy.InRoom, ID: r} }
	model := func(m string) policy.Things { return policy.Things{Kind: policy.OfModel, ID: m} }
	thing := func(i int) policy.Things { return policy.Things{Kind: policy.OneThing, ID: fmt.Sprintf("t%d", i)} }
	all := policy.Things{Kind: policy.AllThings}
	h.Rules = []policy.Rule{
		rule("kid2-school", policy.Allow, member(2), room("kids"), []policy.Action{use}, policy.When{Days: school, Start: "07:00", End: "20:00"}),
		rule("kid2-weekend", policy.Allow, member(2), room("kids"), []policy.Action{use}, policy.When{Days: weekend, Start: "08:00", End: "21:30"}),
		rule("kid3-school", policy.Allow, member(3), room("kids"), []policy.Action{use}, policy.When{Days: school, Start: "07:00", End: "19:00"}),
		rule("kid4-living", policy.Allow, member(4), room("living"), []policy.Action{use, sub}, policy.When{Start: "16:00", End: "18:00"}),
		rule("teens-late", policy.Allow, policy.Who{Kind: policy.Dependants}, model("speaker-3"), []policy.Action{sub}, policy.When{Days: []string{"fri", "sat"}, Start: "22:00", End: "01:00"}),
		rule("everyone-lamps", policy.Allow, policy.Who{Kind: policy.Everyone}, model("lamp-1"), []policy.Action{use, conf}, policy.When{}),
		rule("no-kid-config", policy.Deny, policy.Who{Kind: policy.Dependants}, all, []policy.Action{conf, policy.Pair}, policy.When{}),
		rule("guests-living", policy.Allow, policy.Who{Kind: policy.Guests}, room("living"), []policy.Action{use}, policy.When{FirstDate: "2025-03-01", LastDate: "2025-12-31"}),
		rule("guest5-garden", policy.Allow, member(5), room("garden"), []policy.Action{use, pub}, policy.When{Days: weekend}),
		rule("guest6-kitchen", policy.Allow, member(6), room("kitchen"), []policy.Action{use}, policy.When{Start: "06:30", End: "10:00"}),
		rule("office-closed", policy.Deny, policy.Who{Kind: policy.Everyone}, room("office"), []policy.Action{use}, policy.When{Days: weekend}),
		rule("thermo-kids", policy.Allow, policy.Who{Kind: policy.Dependants}, model("thermo-2"), []policy.Action{use}, policy.When{Start: "06:00", End: "22:00"}),
		rule("no-night-stream", policy.Deny, policy.Who{Kind: policy.Dependants}, all, []policy.Action{pub}, policy.When{Start: "23:00", End: "06:00"}),
		rule("kid2-t7", policy.Allow, member(2), thing(7), []policy.Action{use, sub, pub}, policy.When{Days: school, Start: "15:00", End: "17:30"}),
		rule("grounded", policy.Deny, member(3), room("living"), []policy.Action{use}, policy.When{FirstDate: "2025-03-17", LastDate: "2025-03-21"}),
		rule("gran-holiday", policy.Allow, member(6), all, []policy.Action{use}, policy.When{FirstDate: "2025-12-20", LastDate: "2026-01-06"}),
	}
	return h
}

// request is one question of the sample, with the time it is asked at.
type request struct {
	policy.Request
	at time.Time
}

// sample draws requests of the household's members about its things, at
// times spread over a week of March 2025 (and one day of December), and a
// few of strangers and of things that are not the household's.
func sample(h *policy.Household, size int) []request {
	r := rand.New(rand.NewPCG(14, 14))
	actions := []policy.Action{policy.Use, policy.Use, policy.Publish, policy.Subscribe, policy.Configure, policy.Pair}
	start := time.Date(2025, 3, 15, 0, 0, 0, 0, h.Zone)
	out := make([]request, size)
	for i := range out {
		user := h.Members[r.IntN(len(h.Members))].UserID
		thing := h.Things[r.IntN(len(h.Things))].ID
		switch r.IntN(50) {
		case 0:
			user = "stranger"
		case 1:
			thing = "elsewhere"
		}
		at := start.Add(time.Duration(r.Int64N(int64(7 * 24 * time.Hour))))
		if r.IntN(10) == 0 {
			at = time.Date(2025, 12, 24, r.IntN(24), r.IntN(60), 0, 0, h.Zone)
		}
		out[i] = request{policy.Request{UserID: user, ThingID: thing, Action: actions[r.IntN(len(actions))]}, at}
	}
	return out
}
