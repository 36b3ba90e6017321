package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/mqtt/topics"
)

// Who a rule applies to.
const (
	WhoThing     = "thing"     // a device or gateway: its own token, a token for its owner, or its certificate
	WhoService   = "service"   // an OAuth client acting for itself (client credentials) and standing for no thing
	WhoUser      = "user"      // an application acting for a user
	WhoAdmin     = "admin"     // a token with the admin scope (of an administrator when it acts for a user)
	WhoAnonymous = "anonymous" // a client without credentials on a listener that lets them in
)

// Scopes of the form mqtt:pub:<filter> and mqtt:sub:<filter> grant topics to
// the token that carries them, with the same placeholders as rules.
const (
	scopePublish   = "mqtt:pub:"
	scopeSubscribe = "mqtt:sub:"
)

// Rule grants topic filters to one kind of identity, and refuses those in
// Deny: a denied topic is refused whatever rule or scope allows it. Filters
// may hold the placeholders ${thing.id}, ${thing.model}, ${owner.id},
// ${client.id}, ${sub} and ${owned.thing.id} (one filter for each thing the
// user owns); a deny filter whose placeholder has no value for an identity
// denies it nothing, as an allow filter grants nothing.
type Rule struct {
	Who       string
	Publish   []string
	Subscribe []string
	Deny      Deny
}

// Deny lists the topic filters a rule refuses. A denied subscription
// filter refuses every filter it covers at SUBSCRIBE and every message on
// a topic it matches at delivery, so things/secret is refused under an
// allowed things/#, which may still be subscribed to.
type Deny struct {
	Publish   []string
	Subscribe []string
}

// filters are all of r's filters, for checks that look at every one.
func (r *Rule) filters() map[string][]string {
	return map[string][]string{"publish": r.Publish, "subscribe": r.Subscribe, "deny.publish": r.Deny.Publish, "deny.subscribe": r.Deny.Subscribe}
}

// placeholders are the names a filter may hold, and whether the value is a list.
var placeholders = map[string]bool{
	"thing.id": false, "thing.model": false, "owner.id": false, "client.id": false, "sub": false,
	"owned.thing.id": true,
}

// CheckRules reports the first rule that is not well-formed, naming it as
// mqtt.rules[i] so that the error points at the configuration.
func CheckRules(rules []Rule) error {
	for i, r := range rules {
		switch r.Who {
		case WhoThing, WhoService, WhoUser, WhoAdmin, WhoAnonymous:
		default:
			return fmt.Errorf("mqtt.rules[%d].who: %q is not thing, service, user, admin or anonymous", i, r.Who)
		}
		for field, filters := range r.filters() {
			for j, f := range filters {
				if err := checkTemplate(f); err != nil {
					return fmt.Errorf("mqtt.rules[%d].%s[%d]: %w", i, field, j, err)
				}
			}
		}
	}
	return nil
}

// checkTemplate checks that f names only known placeholders, each as a whole
// level, and is a valid filter once they are filled in.
func checkTemplate(f string) error {
	var sample strings.Builder
	rest := f
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			sample.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("%q: unclosed ${", f)
		}
		name := rest[i+2 : i+j]
		if _, ok := placeholders[name]; !ok {
			return fmt.Errorf("%q: unknown placeholder ${%s} (known: ${thing.id}, ${thing.model}, ${owner.id}, ${client.id}, ${sub}, ${owned.thing.id})", f, name)
		}
		sample.WriteString(rest[:i])
		sample.WriteString("x")
		rest = rest[i+j+1:]
	}
	if !validFilter(sample.String()) {
		return fmt.Errorf("%q is not a valid topic filter", f)
	}
	return nil
}

// expand fills the placeholders of f from values. A placeholder without a
// value, or with a value that is not one plain level (empty, or holding '/',
// '+', '#' or NUL), makes the filter grant nothing: an identity never gets
// more than the rule names because of what its attributes contain.
func expand(f string, values func(name string) []string) []string {
	out := []string{""}
	rest := f
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil
		}
		vals := values(rest[i+2 : i+j])
		var next []string
		for _, prefix := range out {
			for _, v := range vals {
				if v != "" && !strings.ContainsAny(v, "/+#\x00") {
					next = append(next, prefix+rest[:i]+v)
				}
			}
		}
		out = next
		rest = rest[i+j+1:]
	}
	for i := range out {
		out[i] += rest
	}
	return slices.DeleteFunc(out, func(s string) bool { return !validFilter(s) })
}

// identityValues are the placeholders' values of one identity, looked up
// by name without building a map on every CONNECT.
type identityValues struct {
	one   [5]string // thing.id, thing.model, owner.id, client.id, sub
	owned []string  // owned.thing.id
}

func (v *identityValues) of(name string) []string {
	switch name {
	case "thing.id":
		return v.one[0:1]
	case "thing.model":
		return v.one[1:2]
	case "owner.id":
		return v.one[2:3]
	case "client.id":
		return v.one[3:4]
	case "sub":
		return v.one[4:5]
	case "owned.thing.id":
		return v.owned
	}
	return nil
}

// grants are the topic filters one identity may and may not publish to
// and subscribe to, compiled once at CONNECT (and after the identity
// changed): the core asks for every delivery, so checks must not touch the
// store.
type grants struct {
	publish   topics.Grants
	subscribe topics.Grants
}

// compile resolves the rules and the token's mqtt: scopes for id.
func compile(rules []Rule, id *Identity) *grants {
	values := identityValues{one: [...]string{id.Thing, id.Model, id.Owner, id.ClientIdentifier, id.Subject}, owned: id.Owned}
	g := &grants{}
	add := func(to *[]string, fs []string) {
		for _, f := range fs {
			*to = append(*to, expand(f, values.of)...)
		}
	}
	for _, r := range rules {
		if !id.is(r.Who) {
			continue
		}
		add(&g.publish.Allow, r.Publish)
		add(&g.subscribe.Allow, r.Subscribe)
		add(&g.publish.Deny, r.Deny.Publish)
		add(&g.subscribe.Deny, r.Deny.Subscribe)
	}
	for _, s := range id.Scopes {
		if f, ok := strings.CutPrefix(s, scopePublish); ok {
			add(&g.publish.Allow, []string{f})
		} else if f, ok := strings.CutPrefix(s, scopeSubscribe); ok {
			add(&g.subscribe.Allow, []string{f})
		}
	}
	for _, fs := range []*[]string{&g.publish.Allow, &g.publish.Deny, &g.subscribe.Allow, &g.subscribe.Deny} {
		*fs = compact(*fs)
	}
	return g
}

func compact(fs []string) []string {
	slices.Sort(fs)
	return slices.Compact(fs)
}

// canPublish reports whether the identity may publish to topic.
func (g *grants) canPublish(topic string) bool { return g.publish.Name(topic) }

// canSubscribe reports whether the identity may subscribe to filter.
func (g *grants) canSubscribe(filter string) bool { return g.subscribe.Filter(filter) }

// canReceive reports whether the identity may receive a message on topic.
func (g *grants) canReceive(topic string) bool { return g.subscribe.Name(topic) }
