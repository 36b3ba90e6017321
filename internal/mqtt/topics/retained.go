package topics

import (
	"strings"
	"sync"
)

// Retained holds the last retained message of each topic (MQTT 5 §3.3.1.3)
// in a tree of levels, so a new subscription's filter walks only the
// branches it matches. M is the server's message type.
type Retained[M comparable] struct {
	mu    sync.RWMutex
	root  rnode[M]
	count int
}

type rnode[M comparable] struct {
	children map[string]*rnode[M]
	topic    string
	msg      M
	has      bool
}

// Set makes m the retained message of topic, replacing any.
func (r *Retained[M]) Set(topic string, m M) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := &r.root
	for level := range strings.SplitSeq(topic, "/") {
		c := n.children[level]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*rnode[M]{}
			}
			c = &rnode[M]{}
			n.children[level] = c
		}
		n = c
	}
	if !n.has {
		r.count++
	}
	n.topic, n.msg, n.has = topic, m, true
}

// Delete removes topic's retained message (§3.3.1.3: a retained PUBLISH
// with an empty payload does) and reports whether there was one.
func (r *Retained[M]) Delete(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delete(topic, nil)
}

// CompareAndDelete removes topic's retained message if it is still m (an
// expired one, unless a newer one replaced it meanwhile).
func (r *Retained[M]) CompareAndDelete(topic string, m M) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delete(topic, &m)
}

// delete removes topic's message, if it is *want when want is set; r.mu is
// held.
func (r *Retained[M]) delete(topic string, want *M) bool {
	levels := strings.Split(topic, "/")
	path := []*rnode[M]{&r.root}
	for _, level := range levels {
		c := path[len(path)-1].children[level]
		if c == nil {
			return false
		}
		path = append(path, c)
	}
	n := path[len(path)-1]
	if !n.has || (want != nil && n.msg != *want) {
		return false
	}
	var zero M
	n.topic, n.msg, n.has = "", zero, false
	r.count--
	for i := len(path) - 1; i > 0 && !path[i].has && len(path[i].children) == 0; i-- {
		delete(path[i-1].children, levels[i-1])
	}
	return true
}

// Len is the number of retained messages.
func (r *Retained[M]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// Match calls f with each retained message whose topic filter matches
// (without its $share prefix), under a read lock: f must not call r.
func (r *Retained[M]) Match(filter string, f func(topic string, m M)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cur := []*rnode[M]{&r.root}
	var next []*rnode[M]
	first := true
	for level := range strings.SplitSeq(filter, "/") {
		next = next[:0]
		for _, n := range cur {
			switch level {
			case "#":
				// §4.7.1.2: the parent and every level below; §4.7.2: not
				// the '$' topics from the first level.
				if n != &r.root && n.has {
					f(n.topic, n.msg)
				}
				for name, c := range n.children {
					if !(first && strings.HasPrefix(name, "$")) {
						c.walk(f)
					}
				}
			case "+":
				for name, c := range n.children {
					if !(first && strings.HasPrefix(name, "$")) {
						next = append(next, c)
					}
				}
			default:
				if c := n.children[level]; c != nil {
					next = append(next, c)
				}
			}
		}
		cur, next = next, cur
		first = false
	}
	for _, n := range cur {
		if n.has {
			f(n.topic, n.msg)
		}
	}
}

// Each calls f with every retained message, under a read lock.
func (r *Retained[M]) Each(f func(topic string, m M)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.root.walk(f)
}

// walk calls f for n and everything below it, without recursion.
func (n *rnode[M]) walk(f func(string, M)) {
	stack := []*rnode[M]{n}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.has {
			f(n.topic, n.msg)
		}
		for _, c := range n.children {
			stack = append(stack, c)
		}
	}
}
