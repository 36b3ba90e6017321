package topics

import "github.com/thingid/thingid/internal/broker/topic"

// Grants are the topic filters an identity may use for one action (publish
// or subscribe) and those it may not: a deny wins over any allow, so a rule
// can refuse things/secret under an allowed things/#.
type Grants struct {
	Allow []string
	Deny  []string
}

// Name reports whether a message on the topic name is granted: an allow
// matches it and no deny does. The server asks it for every PUBLISH and
// every delivery.
func (g *Grants) Name(name string) bool {
	return anyCovers(g.Allow, name) && !anyCovers(g.Deny, name)
}

// Filter reports whether a subscription to f ($share prefix allowed) is
// granted: an allow covers all of it and no deny covers all of it. A
// filter that reaches into a denied topic only in part (things/# with
// things/secret denied) is granted; the delivery check (Name) refuses the
// denied topics' messages one by one.
func (g *Grants) Filter(f string) bool {
	f, ok := topic.ShareFilter(f)
	return ok && anyCovers(g.Allow, f) && !anyCovers(g.Deny, f)
}

func anyCovers(filters []string, f string) bool {
	for _, a := range filters {
		if topic.Covers(a, f) {
			return true
		}
	}
	return false
}
