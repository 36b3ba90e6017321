package topics

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/broker/topic"
)

// clients returns the client ids a Match gave, sorted.
func clients(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ClientID)
	}
	slices.Sort(out)
	return out
}

// TestMatchSpecExamples are the examples of MQTT 5 §4.7.1 and §4.7.2.
func TestMatchSpecExamples(t *testing.T) {
	for _, tc := range []struct {
		filter string
		topics map[string]bool
	}{
		{"sport/tennis/player1/#", map[string]bool{
			"sport/tennis/player1": true, "sport/tennis/player1/ranking": true,
			"sport/tennis/player1/score/wimbledon": true, "sport/tennis/player2": false}},
		{"sport/#", map[string]bool{"sport": true, "sport/x": true, "sports": false}},
		{"#", map[string]bool{"a": true, "/": true, "$SYS/x": false, "$x": false}},
		{"sport/tennis/+", map[string]bool{"sport/tennis/player1": true, "sport/tennis/player2": true,
			"sport/tennis/player1/ranking": false, "sport/tennis": false}},
		{"sport/+", map[string]bool{"sport": false, "sport/": true}},
		{"+/+", map[string]bool{"/finance": true, "a/b": true, "a": false}},
		{"/+", map[string]bool{"/finance": true, "a/b": false}},
		{"+", map[string]bool{"/finance": false, "a": true, "$SYS": false}},
		{"+/monitor/Clients", map[string]bool{"$SYS/monitor/Clients": false, "x/monitor/Clients": true}},
		{"$SYS/#", map[string]bool{"$SYS/monitor/Clients": true, "$SYS": true, "SYS/x": false}},
		{"$SYS/monitor/+", map[string]bool{"$SYS/monitor/Clients": true}},
		{"a//b", map[string]bool{"a//b": true, "a/b": false}},
	} {
		var tr Tree
		tr.Subscribe("c", Subscription{Filter: tc.filter})
		for name, want := range tc.topics {
			if got := len(tr.Match(name, "", nil)) == 1; got != want {
				t.Errorf("%q matches %q: %v, want %v", tc.filter, name, got, want)
			}
		}
	}
}

// TestMatchOverlapping: one delivery per client, at the highest QoS, with
// every Subscription Identifier (MQTT 5 §3.3.4).
func TestMatchOverlapping(t *testing.T) {
	var tr Tree
	tr.Subscribe("a", Subscription{Filter: "x/#", QoS: 0, ID: 1})
	tr.Subscribe("a", Subscription{Filter: "x/+", QoS: 2, ID: 2, RetainAsPublished: true})
	tr.Subscribe("a", Subscription{Filter: "x/y", QoS: 1})
	tr.Subscribe("b", Subscription{Filter: "x/y", QoS: 1, ID: 7})
	got := tr.Match("x/y", "", nil)
	slices.SortFunc(got, func(a, b Delivery) int { return strings.Compare(a.ClientID, b.ClientID) })
	slices.Sort(got[0].SubscriptionIDs)
	want := []Delivery{
		{ClientID: "a", QoS: 2, RetainAsPublished: true, SubscriptionIDs: []int{1, 2}},
		{ClientID: "b", QoS: 1, SubscriptionIDs: []int{7}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// TestMatchManySubscribers: the merge index keeps one delivery per client
// when far more clients than scanMax match, each through two filters.
func TestMatchManySubscribers(t *testing.T) {
	var tr Tree
	for i := range 100 {
		id := fmt.Sprint("c", i)
		tr.Subscribe(id, Subscription{Filter: "t/#", ID: 1})
		tr.Subscribe(id, Subscription{Filter: "t/x", ID: 2})
	}
	got := tr.Match("t/x", "", nil)
	if len(got) != 100 {
		t.Fatalf("%d deliveries, want 100", len(got))
	}
	for _, d := range got {
		if len(d.SubscriptionIDs) != 2 {
			t.Fatalf("%s has ids %v", d.ClientID, d.SubscriptionIDs)
		}
	}
}

// TestNoLocal: §3.8.3.1, a subscription with No Local never gets its own
// client's messages; the client's other subscriptions still do.
func TestNoLocal(t *testing.T) {
	var tr Tree
	tr.Subscribe("a", Subscription{Filter: "x", NoLocal: true})
	tr.Subscribe("b", Subscription{Filter: "x", NoLocal: true})
	if got := clients(tr.Match("x", "a", nil)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("got %v", got)
	}
	tr.Subscribe("a", Subscription{Filter: "#"})
	if got := clients(tr.Match("x", "a", nil)); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("got %v", got)
	}
}

// TestShared: each message of a shared subscription goes to one member of
// the group, in turn, besides the members' own subscriptions (§4.8.2).
func TestShared(t *testing.T) {
	var tr Tree
	tr.Subscribe("a", Subscription{Filter: "$share/g/x/+", QoS: 1})
	tr.Subscribe("b", Subscription{Filter: "$share/g/x/+", QoS: 1})
	tr.Subscribe("c", Subscription{Filter: "$share/h/x/#"})
	tr.Subscribe("a", Subscription{Filter: "x/y"})
	counts := map[string]int{}
	for range 10 {
		for _, d := range tr.Match("x/y", "", nil) {
			if d.Shared {
				counts[d.ClientID]++
			}
		}
	}
	if want := map[string]int{"a": 5, "b": 5, "c": 10}; !reflect.DeepEqual(counts, want) {
		t.Fatalf("shared deliveries %v, want %v", counts, want)
	}
	if own := tr.Match("x/y", "", nil); len(own) != 3 {
		t.Fatalf("%d deliveries, want a's own, one of g's, c for h: %+v", len(own), own)
	}
	if !tr.Unsubscribe("a", "$share/g/x/+") || tr.Unsubscribe("a", "$share/g/x/+") {
		t.Fatal("unsubscribe from a shared subscription")
	}
	for range 3 {
		for _, d := range tr.Match("x/y", "", nil) {
			if d.Shared && d.ClientID == "a" {
				t.Fatal("a left the group but still gets its messages")
			}
		}
	}
}

// TestSharedElsewhere: a server that shares its groups with other servers
// matches without them, and picks a group's member when handed a message.
func TestSharedElsewhere(t *testing.T) {
	var tr Tree
	tr.Subscribe("a", Subscription{Filter: "$share/g/x/+", QoS: 1, ID: 7})
	tr.Subscribe("b", Subscription{Filter: "$share/g/x/+", QoS: 2})
	tr.Subscribe("c", Subscription{Filter: "x/y"})
	if ds := tr.MatchUnshared("x/y", "", nil); len(ds) != 1 || ds[0].ClientID != "c" {
		t.Fatalf("MatchUnshared: %+v, want c's own only", ds)
	}
	picked := map[string]int{}
	for range 4 {
		d, ok := tr.Pick("$share/g/x/+")
		if !ok || !d.Shared {
			t.Fatalf("Pick: %+v %v", d, ok)
		}
		picked[d.ClientID]++
	}
	if want := map[string]int{"a": 2, "b": 2}; !reflect.DeepEqual(picked, want) {
		t.Fatalf("picked %v, want %v", picked, want)
	}
	for f, want := range map[string]int{"$share/g/x/+": 2, "$share/h/x/+": 0, "$share/g/x": 0, "x/y": 0} {
		if got := tr.Members(f); got != want {
			t.Errorf("Members(%q) = %d, want %d", f, got, want)
		}
	}
	tr.Subscribe("d", Subscription{Filter: "x/y"})
	for f, want := range map[string]int{"x/y": 2, "x/+": 0, "x": 0, "x/y/z": 0} {
		if got := tr.Subscribers(f); got != want {
			t.Errorf("Subscribers(%q) = %d, want %d", f, got, want)
		}
	}
	tr.Unsubscribe("a", "$share/g/x/+")
	tr.Unsubscribe("b", "$share/g/x/+")
	if d, ok := tr.Pick("$share/g/x/+"); ok {
		t.Fatalf("Pick from a group without members: %+v", d)
	}
}

// TestSubscribeReplaces: §3.8.4, the same filter again replaces the
// subscription and says it existed (for Retain Handling 1).
func TestSubscribeReplaces(t *testing.T) {
	var tr Tree
	if tr.Subscribe("a", Subscription{Filter: "x", QoS: 0}) {
		t.Fatal("a new subscription existed")
	}
	if !tr.Subscribe("a", Subscription{Filter: "x", QoS: 2}) {
		t.Fatal("a replaced subscription did not exist")
	}
	if tr.Len() != 1 || tr.Match("x", "", nil)[0].QoS != 2 {
		t.Fatalf("len %d, %+v", tr.Len(), tr.Match("x", "", nil))
	}
}

// TestUnsubscribePrunes: no node outlives its last subscription, so a
// client subscribing and unsubscribing unique filters leaves nothing.
func TestUnsubscribePrunes(t *testing.T) {
	var tr Tree
	for i := range 1000 {
		f := fmt.Sprintf("a/%d/b/#", i)
		tr.Subscribe("c", Subscription{Filter: f})
		tr.Subscribe("c", Subscription{Filter: "$share/g/" + f})
	}
	tr.Subscribe("c", Subscription{Filter: "a"})
	for i := range 1000 {
		f := fmt.Sprintf("a/%d/b/#", i)
		if !tr.Unsubscribe("c", f) || !tr.Unsubscribe("c", "$share/g/"+f) {
			t.Fatalf("unsubscribe %s", f)
		}
	}
	if tr.Unsubscribe("c", "a/1/b/#") || tr.Unsubscribe("d", "a") || tr.Unsubscribe("c", "zz") {
		t.Fatal("unsubscribed what was not subscribed")
	}
	a := tr.root.children["a"]
	if tr.Len() != 1 || len(tr.root.children) != 1 || len(a.children) != 0 {
		t.Fatalf("len %d, root children %d, a's children %d", tr.Len(), len(tr.root.children), len(a.children))
	}
}

// TestManySubscriptionsOneClient: 10,000 subscriptions from one client and
// a topic 30,000 levels deep are handled without recursion.
func TestManySubscriptionsOneClient(t *testing.T) {
	var tr Tree
	for i := range 10_000 {
		tr.Subscribe("c", Subscription{Filter: fmt.Sprintf("d/%d/+", i), ID: i + 1})
	}
	if d := tr.Match("d/42/x", "", nil); len(d) != 1 || !reflect.DeepEqual(d[0].SubscriptionIDs, []int{43}) {
		t.Fatalf("got %+v", d)
	}
	deep := strings.Repeat("+/", 30_000) + "#"
	tr.Subscribe("c", Subscription{Filter: deep})
	if d := tr.Match(strings.Repeat("x/", 30_001), "", nil); len(d) != 1 {
		t.Fatalf("deep topic: %+v", d)
	}
	if !tr.Unsubscribe("c", deep) {
		t.Fatal("deep unsubscribe")
	}
}

func TestRetained(t *testing.T) {
	var r Retained[string]
	for _, name := range []string{"a", "a/b", "a/b/c", "a/x", "$SYS/up", "/lead", "a//b"} {
		r.Set(name, "m:"+name)
	}
	r.Set("a/b", "m:a/b again")
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"#", []string{"/lead", "a", "a//b", "a/b", "a/b/c", "a/x"}},
		{"a/#", []string{"a", "a//b", "a/b", "a/b/c", "a/x"}},
		{"a/+", []string{"a/b", "a/x"}},
		{"+/+", []string{"/lead", "a/b", "a/x"}},
		{"+", []string{"a"}},
		{"$SYS/#", []string{"$SYS/up"}},
		{"a/b", []string{"a/b"}},
		{"a/+/c", []string{"a/b/c"}},
		{"nothing/#", nil},
	} {
		var got []string
		r.Match(tc.filter, func(topic, m string) {
			if !strings.HasPrefix(m, "m:"+topic) {
				t.Errorf("%s holds %q", topic, m)
			}
			got = append(got, topic)
		})
		slices.Sort(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.filter, got, tc.want)
		}
	}
	if r.CompareAndDelete("a/b", "m:a/b") || !r.CompareAndDelete("a/b", "m:a/b again") {
		t.Fatal("CompareAndDelete removed another message, or not its own")
	}
	r.Set("a/b", "m:a/b")
	if r.Len() != 7 || !r.Delete("a/b") || r.Delete("a/b") || r.Delete("a/q") || r.Len() != 6 {
		t.Fatalf("len %d after deletes", r.Len())
	}
	for _, name := range []string{"a", "a/b/c", "a/x", "$SYS/up", "/lead", "a//b"} {
		r.Delete(name)
	}
	if r.Len() != 0 || len(r.root.children) != 0 {
		t.Fatalf("len %d, %d nodes left", r.Len(), len(r.root.children))
	}
}

// TestGrantsDenyWins is issue 16 item 7: a deny refuses things/secret under
// an allowed things/#, for publishing, subscribing and every delivery.
func TestGrantsDenyWins(t *testing.T) {
	g := Grants{Allow: []string{"things/#", "$share/g/ignored"}, Deny: []string{"things/secret", "things/+/private/#"}}
	for name, want := range map[string]bool{
		"things/a": true, "things/secret": false, "things/secret/x": true,
		"things/t1/private": false, "things/t1/private/x": false, "other": false,
	} {
		if got := g.Name(name); got != want {
			t.Errorf("Name(%q) = %v, want %v", name, got, want)
		}
	}
	for f, want := range map[string]bool{
		"things/#": true, "things/+": true, "things/secret": false, "$share/x/things/secret": false,
		"things/t1/private/#": false, "things/+/private/+": false, "$share/x/things/a": true,
		"$share//things/a": false, "#": false,
	} {
		if got := g.Filter(f); got != want {
			t.Errorf("Filter(%q) = %v, want %v", f, got, want)
		}
	}
}

// reference is what Match must give: the clients with a subscription of
// their own whose filter matches, by the rules of package topic, and the
// shared groups (share name and filter) that match, with their members.
func reference(subs map[[2]string]Subscription, name, publisher string) (own map[string]bool, groups map[[2]string]map[string]bool) {
	own, groups = map[string]bool{}, map[[2]string]map[string]bool{}
	for k, s := range subs {
		share, f := splitShared(s.Filter)
		if !topic.Covers(f, name) {
			continue
		}
		switch {
		case share != "":
			g := [2]string{share, f}
			if groups[g] == nil {
				groups[g] = map[string]bool{}
			}
			groups[g][k[0]] = true
		case !(s.NoLocal && k[0] == publisher):
			own[k[0]] = true
		}
	}
	return own, groups
}

// FuzzTree drives subscribe, unsubscribe, match and the retained store
// with arbitrary filters and topics, and checks every match against the
// brute-force reference: the same clients for their own subscriptions, one
// delivery to a member for each shared group that matches, and exactly the
// retained topics the filter covers.
func FuzzTree(f *testing.F) {
	f.Add([]byte("s a/+ a\ns #\nm a/b\nu a/+\nm a/b\ns $share/g/a/# b\nm a"))
	f.Add([]byte("r a/b\nr a\nr $SYS/x\nq #\nq a/#\nq +/+\nd a\nq a/#"))
	f.Add([]byte("s +/+ c\nn x/y\nm $SYS/x\ns $SYS/# d\nm $SYS/x/y\ns $share/g/+ e\ns $share/g/+ f\nm q"))
	f.Fuzz(func(t *testing.T, script []byte) {
		var tr Tree
		var ret Retained[string]
		subs := map[[2]string]Subscription{}
		retained := map[string]bool{}
		for line := range strings.Lines(string(script)) {
			op, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			arg, client, _ := strings.Cut(rest, " ")
			switch op {
			case "s", "n":
				share, _ := splitShared(arg)
				if _, ok := topic.ShareFilter(arg); !ok || !topic.ValidFilter(arg) {
					continue
				}
				s := Subscription{Filter: arg, NoLocal: op == "n" && share == ""}
				_, had := subs[[2]string{client, arg}]
				if tr.Subscribe(client, s) != had {
					t.Fatalf("subscribe %q %q: existed says %v", client, arg, !had)
				}
				subs[[2]string{client, arg}] = s
			case "u":
				_, had := subs[[2]string{client, arg}]
				if tr.Unsubscribe(client, arg) != had {
					t.Fatalf("unsubscribe %q %q: want %v", client, arg, had)
				}
				delete(subs, [2]string{client, arg})
			case "r":
				if topic.ValidName(arg) {
					ret.Set(arg, arg)
					retained[arg] = true
				}
			case "d":
				if ret.Delete(arg) != retained[arg] {
					t.Fatalf("delete retained %q: want %v", arg, retained[arg])
				}
				delete(retained, arg)
			case "q":
				_, f := splitShared(arg)
				if !topic.ValidFilter(f) {
					continue
				}
				got := map[string]bool{}
				ret.Match(f, func(name, m string) {
					if got[name] || name != m {
						t.Fatalf("retained match %q: %q twice or holding %q", f, name, m)
					}
					got[name] = true
				})
				want := map[string]bool{}
				for name := range retained {
					if topic.Covers(f, name) {
						want[name] = true
					}
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("retained match %q: got %v, want %v", f, got, want)
				}
			case "m":
				if !topic.ValidName(arg) {
					continue
				}
				own, groups := reference(subs, arg, client)
				gotOwn := map[string]bool{}
				var shared []string
				for _, d := range tr.Match(arg, client, nil) {
					if d.Shared {
						shared = append(shared, d.ClientID)
					} else if gotOwn[d.ClientID] {
						t.Fatalf("match %q: two deliveries for %q", arg, d.ClientID)
					} else {
						gotOwn[d.ClientID] = true
					}
				}
				if !reflect.DeepEqual(gotOwn, own) {
					t.Fatalf("match %q by %q: got %v, want %v", arg, client, gotOwn, own)
				}
				if len(shared) != len(groups) {
					t.Fatalf("match %q: %d shared deliveries for %d groups", arg, len(shared), len(groups))
				}
				for _, c := range shared {
					member := false
					for _, g := range groups {
						member = member || g[c]
					}
					if !member {
						t.Fatalf("match %q: shared delivery to %q, in no matching group", arg, c)
					}
				}
			}
		}
		if tr.Len() != len(subs) || ret.Len() != len(retained) {
			t.Fatalf("Len %d and %d, want %d and %d", tr.Len(), ret.Len(), len(subs), len(retained))
		}
	})
}

// BenchmarkMatch: one topic against 10,000 clients' subscriptions, a
// hundred of which match.
func BenchmarkMatch(b *testing.B) {
	var tr Tree
	for i := range 10_000 {
		tr.Subscribe(fmt.Sprint("c", i), Subscription{Filter: fmt.Sprintf("things/t%d/+/state", i%100), QoS: 1})
	}
	tr.Subscribe("admin", Subscription{Filter: "things/#"})
	out := make([]Delivery, 0, 200)
	b.ReportAllocs()
	for b.Loop() {
		out = tr.Match("things/t42/lamp/state", "", out[:0])
	}
	if len(out) != 101 {
		b.Fatalf("%d deliveries", len(out))
	}
}
