package broker

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// The rules of package topic as the broker's checks use them (the core's
// topics.Grants and the rules' validFilter).
var (
	validTopic  = topic.ValidName
	shareFilter = topic.ShareFilter
	covers      = topic.Covers
)

func TestCovers(t *testing.T) {
	cases := []struct {
		allowed, sub string
		want         bool
	}{
		// topic names (a name is a filter without wildcards)
		{"sport/tennis/player1/#", "sport/tennis/player1", true}, // MQTT 5 §4.7.1.2: the parent level
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/tennis/+", "sport/tennis", false},
		{"sport/+", "sport/", true}, // an empty level is a level
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"#", "a/b/c", true},
		{"#", "$SYS/broker", false}, // §4.7.2
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"things/a/#", "things/ab", false},
		{"things/a/#", "things/a", true},
		{"things/a", "things/a/", false},
		{"things/a", "Things/a", false}, // case-sensitive
		// filters within filters
		{"things/+/telemetry", "things/+/telemetry", true},
		{"things/+/telemetry", "things/x/telemetry", true},
		{"things/+/telemetry", "things/#", false},
		{"things/+/telemetry", "things/+/+", false},
		{"things/x/#", "things/x/+/y", true},
		{"things/x/#", "things/x/#", true},
		{"things/x/#", "things/+/#", false},
		{"things/x/#", "#", false},
		{"things/x/commands/#", "things/+/commands/#", false},
		{"things/x/+", "things/x/#", false},
		{"+/#", "#", false}, // conservative: equal in effect, refused anyway
		{"#", "#", true},
		{"#", "+/#", true},
		{"#", "$SYS/#", false},
		{"+", "$SYS", false},
		{"$SYS/#", "$SYS/#", true},
		{"a/b", "a/b/#", false},
		{"a/b/#", "a/b/#", true},
	}
	for _, tc := range cases {
		if got := covers(tc.allowed, tc.sub); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.allowed, tc.sub, got, tc.want)
		}
	}
}

func TestValidFilterAndTopic(t *testing.T) {
	for f, want := range map[string]bool{
		"a/b": true, "a/+/b": true, "a/#": true, "#": true, "+": true, "/": true, "a//b": true,
		"": false, "a/#/b": false, "a+": false, "a/b#": false, "+a/b": false, "a\x00b": false, "\xff": false,
	} {
		if got := validFilter(f); got != want {
			t.Errorf("validFilter(%q) = %v", f, got)
		}
	}
	for name, want := range map[string]bool{"a/b": true, "/": true, "": false, "a/+": false, "#": false, "a\x00": false} {
		if got := validTopic(name); got != want {
			t.Errorf("validTopic(%q) = %v", name, got)
		}
	}
}

// FuzzValidFilter holds validFilter, which reads a filter level by level,
// to the rule read off its levels split: '+' and '#' alone in their level,
// '#' the last.
func FuzzValidFilter(f *testing.F) {
	for _, s := range []string{"a/b", "a/+/b", "a/#", "#", "/", "a//b", "", "a/#/b", "a+", "+a/b", "a\x00b", "\xff", "#/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := s != "" && len(s) <= 65535 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
		levels := strings.Split(s, "/")
		for i, l := range levels {
			want = want && !(strings.ContainsAny(l, "+#") && len(l) > 1) && !(l == "#" && i != len(levels)-1)
		}
		if got := validFilter(s); got != want {
			t.Fatalf("validFilter(%q) = %v, want %v", s, got, want)
		}
	})
}

func TestShareFilter(t *testing.T) {
	for in, want := range map[string]string{
		"$share/g/things/+/telemetry": "things/+/telemetry",
		"$SHARE/g/a":                  "a",
		"things/x":                    "things/x",
		"$share/g":                    "!",
		"$share//a":                   "!",
		"$share/+/a":                  "!",
		"$share/g/":                   "!",
	} {
		got, ok := shareFilter(in)
		if !ok {
			got = "!"
		}
		if got != want {
			t.Errorf("shareFilter(%q) = %q", in, got)
		}
	}
}

func TestExpand(t *testing.T) {
	values := map[string][]string{
		"thing.id": {"t1"}, "owner.id": {""}, "sub": {"a/b"}, "client.id": {"+"},
		"owned.thing.id": {"t1", "t2"}, "thing.model": {"M#1"},
	}
	cases := []struct {
		f    string
		want []string
	}{
		{"things/${thing.id}/#", []string{"things/t1/#"}},
		{"things/${owned.thing.id}/#", []string{"things/t1/#", "things/t2/#"}},
		{"users/${owner.id}/#", nil},     // no owner: grants nothing
		{"users/${sub}/#", nil},          // a value holding '/' would reach further: grants nothing
		{"clients/${client.id}", nil},    // nor a wildcard
		{"models/${thing.model}/x", nil}, // nor '#'
		{"fixed/topic", []string{"fixed/topic"}},
		{"${thing.id}-${thing.id}", []string{"t1-t1"}},
	}
	for _, tc := range cases {
		got := expand(tc.f, func(name string) []string { return values[name] })
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("expand(%q) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestCheckRules(t *testing.T) {
	for _, bad := range []Rule{
		{Who: "robot", Publish: []string{"a"}},
		{Who: WhoThing, Publish: []string{"a/${nope}"}},
		{Who: WhoThing, Subscribe: []string{"a/#/b"}},
		{Who: WhoThing, Subscribe: []string{"a/${thing.id"}},
		{Who: WhoThing, Subscribe: []string{""}},
		{Who: WhoThing, Deny: Deny{Publish: []string{"a/#/b"}}},
		{Who: WhoThing, Deny: Deny{Subscribe: []string{"a/${nope}"}}},
	} {
		if err := CheckRules([]Rule{bad}); err == nil || !strings.Contains(err.Error(), "mqtt.rules[0]") {
			t.Errorf("rule %+v: %v", bad, err)
		}
	}
	if err := CheckRules(testRules); err != nil {
		t.Error(err)
	}
}

func TestCompile(t *testing.T) {
	id := &Identity{Kind: kindThing, Thing: "t1", ClientIdentifier: "t1", Scopes: []string{"mqtt:sub:fleet/${thing.model}/#", "openid"}, Model: "M1"}
	g := compile(testRules, id)
	for topic, want := range map[string]bool{"things/t1/telemetry": true, "things/t2/telemetry": false} {
		if g.canPublish(topic) != want {
			t.Errorf("publish %s", topic)
		}
	}
	for filter, want := range map[string]bool{"things/t1/commands/#": true, "fleet/M1/#": true, "fleet/+/#": false, "$SYS/#": false, "lab/public/#": false} {
		if g.canSubscribe(filter) != want {
			t.Errorf("subscribe %s: want %v", filter, want)
		}
	}
	anon := compile(testRules, &Identity{Kind: kindAnonymous, ClientIdentifier: "x"})
	if !anon.canSubscribe("lab/public/x") || anon.canSubscribe("things/t1/commands/x") {
		t.Error("anonymous rules")
	}
}

// FuzzTopicMatcher checks the matcher against a direct reading of the spec
// and its invariants: a filter covers itself, and no allowed filter ever
// lets through a subscription that matches a topic it does not.
func FuzzTopicMatcher(f *testing.F) {
	for _, s := range [][3]string{
		{"things/+/telemetry", "things/#", "things/a/telemetry"},
		{"#", "$SYS/#", "$SYS/x"},
		{"a/#", "a", "a"},
		{"+/+", "/x", "/x"},
		{"$share/g/a/#", "a/b", "a/b"},
		{"a/b/c", "a/+/c", "a/b/c"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, allowed, sub, topic string) {
		if !validFilter(allowed) || !validFilter(sub) {
			return
		}
		if !covers(allowed, allowed) {
			t.Fatalf("%q does not cover itself", allowed)
		}
		if validTopic(topic) && covers(allowed, sub) && covers(sub, topic) && !covers(allowed, topic) {
			t.Fatalf("covers(%q, %q) but %q matches %q and not %q", allowed, sub, topic, sub, allowed)
		}
		if validTopic(topic) && covers(allowed, topic) != specMatch(allowed, topic) {
			t.Fatalf("covers(%q, %q) = %v, the spec says otherwise", allowed, topic, covers(allowed, topic))
		}
		g := &grants{subscribe: topics.Grants{Allow: []string{allowed}}}
		g.canSubscribe(sub) // must not panic on any filter, shared or not
		shareFilter(sub)
	})
}

// specMatch is MQTT 5 §4.7 read literally, level by level.
func specMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if l != "+" && l != tl[i] {
			return false
		}
	}
	return len(f) == len(tl)
}

// FuzzRuleTemplate: whatever a rule holds and whatever an identity's
// attributes contain, expansion yields only valid filters.
func FuzzRuleTemplate(f *testing.F) {
	f.Add("things/${thing.id}/#", "t1")
	f.Add("a/${owned.thing.id}/${sub}", "x/y")
	f.Add("${", "+")
	f.Fuzz(func(t *testing.T, tmpl, value string) {
		if checkTemplate(tmpl) != nil {
			return
		}
		values := map[string][]string{}
		for name := range placeholders {
			values[name] = []string{value, "v"}
		}
		for _, got := range expand(tmpl, func(name string) []string { return values[name] }) {
			if !validFilter(got) {
				t.Fatalf("expand(%q) gave invalid filter %q", tmpl, got)
			}
		}
	})
}

// FuzzRecord: a stored session record never panics the restore, and every
// identity survives the round trip.
func FuzzRecord(f *testing.F) {
	f.Add([]byte(recordPrefix + `{"kind":"thing","thing":"t1","cid":"t1"}`))
	f.Add([]byte(recordPrefix + `{"kind":"user","sub":"u1","client":"home-app","gid":"g1","cid":"phone","idt":true}`))
	f.Add([]byte("alice"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ok := decodeRecord(b)
		if !ok {
			return
		}
		again, ok := decodeRecord(encodeRecord(id))
		if !ok || again.principal() != id.principal() || again.IDToken != id.IDToken {
			t.Fatalf("round trip changed %+v", id)
		}
	})
}
