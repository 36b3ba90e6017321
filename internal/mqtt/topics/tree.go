// Package topics is the MQTT server's topic tree: who is subscribed to what
// (wildcards, shared subscriptions, subscription options), the retained
// messages, and the allow/deny topic grants an authorizer checks. It holds
// no connections and no sessions; well-formedness is package
// internal/broker/topic's, which callers apply first.
package topics

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Subscription is one client's subscription to a filter, with its MQTT 5
// options (§3.8.3.1). For MQTT 3.1.1 the options other than QoS are zero.
type Subscription struct {
	Filter            string // as subscribed, with its $share/<group>/ prefix
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                int // the Subscription Identifier, 0 for none (§3.8.2.1.2)
}

// Delivery is a message's way to one client: for its own subscriptions
// one delivery however many of them match, at the highest QoS among them,
// with every Subscription Identifier (MQTT 5 §3.3.4: the server may send
// one message for overlapping subscriptions); and one for each shared
// subscription group that picked it.
type Delivery struct {
	ClientID          string
	QoS               byte
	RetainAsPublished bool
	SubscriptionIDs   []int
	Shared            bool
}

// Tree holds the subscriptions of every session. Matching takes a read
// lock and walks the levels without recursion, so a topic of thousands of
// levels costs a slice, not a deep stack.
type Tree struct {
	mu    sync.RWMutex
	root  node
	count int
}

type node struct {
	children map[string]*node
	subs     map[string]Subscription // client id → its subscription here
	shared   map[string]*group       // share name → the group's members
}

// group is one shared subscription (§4.8.2): each message goes to one
// member, in turn.
type group struct {
	members map[string]Subscription
	order   []string // client ids, for the turn
	next    atomic.Uint32
}

func (n *node) empty() bool {
	return len(n.children) == 0 && len(n.subs) == 0 && len(n.shared) == 0
}

// splitShared parses $share/<group>/<filter> (MQTT 5 §4.8.2); share is ""
// for a non-shared filter. Callers validated the filter.
func splitShared(f string) (share, filter string) {
	const prefix = "$share/"
	if len(f) < len(prefix) || !strings.EqualFold(f[:len(prefix)], prefix) {
		return "", f
	}
	share, filter, _ = strings.Cut(f[len(prefix):], "/")
	return share, filter
}

// Subscribe adds or replaces clientID's subscription to s.Filter and
// reports whether one existed (§3.8.4: a subscription to the same filter
// replaces the old one; Retain Handling 1 sends retained messages only to
// a new subscription).
func (t *Tree) Subscribe(clientID string, s Subscription) (existed bool) {
	share, filter := splitShared(s.Filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for level := range strings.SplitSeq(filter, "/") {
		c := n.children[level]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*node{}
			}
			c = &node{}
			n.children[level] = c
		}
		n = c
	}
	if share == "" {
		if n.subs == nil {
			n.subs = map[string]Subscription{}
		}
		_, existed = n.subs[clientID]
		n.subs[clientID] = s
	} else {
		g := n.shared[share]
		if g == nil {
			if n.shared == nil {
				n.shared = map[string]*group{}
			}
			g = &group{members: map[string]Subscription{}}
			n.shared[share] = g
		}
		if _, existed = g.members[clientID]; !existed {
			g.order = append(g.order, clientID)
		}
		g.members[clientID] = s
	}
	if !existed {
		t.count++
	}
	return existed
}

// Unsubscribe removes clientID's subscription to filter (as subscribed,
// $share prefix included) and reports whether there was one; nodes left
// empty are removed.
func (t *Tree) Unsubscribe(clientID, filter string) bool {
	share, f := splitShared(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	path := []*node{&t.root}
	levels := strings.Split(f, "/")
	for _, level := range levels {
		c := path[len(path)-1].children[level]
		if c == nil {
			return false
		}
		path = append(path, c)
	}
	n := path[len(path)-1]
	if share == "" {
		if _, ok := n.subs[clientID]; !ok {
			return false
		}
		delete(n.subs, clientID)
	} else {
		g := n.shared[share]
		if g == nil {
			return false
		}
		if _, ok := g.members[clientID]; !ok {
			return false
		}
		delete(g.members, clientID)
		for i, id := range g.order {
			if id == clientID {
				g.order = append(g.order[:i:i], g.order[i+1:]...)
				break
			}
		}
		if len(g.members) == 0 {
			delete(n.shared, share)
		}
	}
	t.count--
	for i := len(path) - 1; i > 0 && path[i].empty(); i-- {
		delete(path[i-1].children, levels[i-1])
	}
	return true
}

// Len is the number of subscriptions in the tree.
func (t *Tree) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// Match appends to out the deliveries of a message published to topic by
// publisher (for No Local, §3.8.3.1: a subscription with it set never gets
// its own client's messages) and returns out.
func (t *Tree) Match(topic, publisher string, out []Delivery) []Delivery {
	return t.match(topic, publisher, out, true)
}

// MatchUnshared is Match without the shared subscriptions, for a server
// whose groups share messages with other servers' (Pick).
func (t *Tree) MatchUnshared(topic, publisher string, out []Delivery) []Delivery {
	return t.match(topic, publisher, out, false)
}

func (t *Tree) match(topic, publisher string, out []Delivery, shared bool) []Delivery {
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := matcher{out: out, start: len(out), publisher: publisher, shared: shared}
	// §4.7.2: a filter starting with a wildcard does not match a topic
	// starting with '$'.
	sys := strings.HasPrefix(topic, "$")
	cur := []*node{&t.root}
	var next []*node
	first := true
	for level := range strings.SplitSeq(topic, "/") {
		next = next[:0]
		for _, n := range cur {
			if c := n.children["#"]; c != nil && !(first && sys) {
				m.add(c)
			}
			if c := n.children[level]; c != nil {
				next = append(next, c)
			}
			if c := n.children["+"]; c != nil && !(first && sys) {
				next = append(next, c)
			}
		}
		cur, next = next, cur
		first = false
		if len(cur) == 0 {
			return m.out
		}
	}
	for _, n := range cur {
		m.add(n)
		if c := n.children["#"]; c != nil {
			m.add(c) // "a/#" matches "a" (§4.7.1.2)
		}
	}
	return m.out
}

type matcher struct {
	out       []Delivery
	start     int
	publisher string
	shared    bool           // shared subscriptions match too
	index     map[string]int // client id → its own delivery, once there are many
}

// scanMax is the number of deliveries merge scans before it keeps an index:
// a message for thousands of clients costs one map, not a scan per client.
const scanMax = 16

func (m *matcher) add(n *node) {
	for id, s := range n.subs {
		if s.NoLocal && id == m.publisher {
			continue
		}
		m.merge(id, s)
	}
	if !m.shared {
		return
	}
	for _, g := range n.shared {
		if d, ok := g.pick(); ok {
			m.out = append(m.out, d)
		}
	}
}

// pick is the delivery to the group's member whose turn it is.
func (g *group) pick() (Delivery, bool) {
	if len(g.order) == 0 {
		return Delivery{}, false
	}
	id := g.order[int(g.next.Add(1)-1)%len(g.order)]
	s := g.members[id]
	d := Delivery{ClientID: id, QoS: s.QoS, RetainAsPublished: s.RetainAsPublished, Shared: true}
	if s.ID != 0 {
		d.SubscriptionIDs = []int{s.ID}
	}
	return d, true
}

// group is shared subscription f ($share/<group>/<filter>), nil when it has
// no member; t is read-locked.
func (t *Tree) group(f string) *group {
	share, filter := splitShared(f)
	if share == "" {
		return nil
	}
	n := &t.root
	for level := range strings.SplitSeq(filter, "/") {
		if n = n.children[level]; n == nil {
			return nil
		}
	}
	return n.shared[share]
}

// Members is the number of members of shared subscription f
// ($share/<group>/<filter>).
func (t *Tree) Members(f string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if g := t.group(f); g != nil {
		return len(g.members)
	}
	return 0
}

// Subscribers is the number of subscriptions to f, not shared.
func (t *Tree) Subscribers(f string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := &t.root
	for level := range strings.SplitSeq(f, "/") {
		if n = n.children[level]; n == nil {
			return 0
		}
	}
	return len(n.subs)
}

// Pick is the delivery of a message to the member of shared subscription f
// whose turn it is; false when f has none.
func (t *Tree) Pick(f string) (Delivery, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if g := t.group(f); g != nil {
		return g.pick()
	}
	return Delivery{}, false
}

// merge folds s into clientID's delivery, adding one if it has none yet.
func (m *matcher) merge(clientID string, s Subscription) {
	if i, ok := m.find(clientID); ok {
		d := &m.out[i]
		d.QoS = max(d.QoS, s.QoS)
		d.RetainAsPublished = d.RetainAsPublished || s.RetainAsPublished
		if s.ID != 0 {
			d.SubscriptionIDs = append(d.SubscriptionIDs, s.ID)
		}
		return
	}
	d := Delivery{ClientID: clientID, QoS: s.QoS, RetainAsPublished: s.RetainAsPublished}
	if s.ID != 0 {
		d.SubscriptionIDs = []int{s.ID}
	}
	m.out = append(m.out, d)
	if m.index != nil {
		m.index[clientID] = len(m.out) - 1
	}
}

// find is the index of clientID's own (not shared) delivery.
func (m *matcher) find(clientID string) (int, bool) {
	if m.index == nil && len(m.out)-m.start > scanMax {
		m.index = make(map[string]int, len(m.out)-m.start)
		for i := m.start; i < len(m.out); i++ {
			if !m.out[i].Shared {
				m.index[m.out[i].ClientID] = i
			}
		}
	}
	if m.index != nil {
		i, ok := m.index[clientID]
		return i, ok
	}
	for i := m.start; i < len(m.out); i++ {
		if m.out[i].ClientID == clientID && !m.out[i].Shared {
			return i, true
		}
	}
	return 0, false
}
