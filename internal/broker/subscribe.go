package broker

import (
	"context"
	"fmt"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt"
)

// Delivered is a message as SubscribeAsThing and RetainedAsThing hand it
// over: its topic, payload and MQTT 5 content type ("" when none).
type Delivered struct {
	Topic       string
	Payload     []byte
	ContentType string
}

// SubscribeAsThing subscribes a thing that another door authenticated
// with its certificate (cert: the lower-case hex SHA-256 of its DER) to
// filter, as an MQTT connection with that certificate would subscribe:
// the thing is read from the store (ErrInactive when disabled or deleted),
// its topic rules compiled (ErrNotAllowed when they refuse the filter), and
// every message matching it, the retained ones first, goes to deliver if
// the rules let the thing receive its topic (deny rules at delivery
// included), whichever node of a cluster it was published on. deliver runs
// on the publisher's path and must not block. A shared subscription
// ($share/) is ErrTopic: a gateway's observer takes no turns in a group.
//
// The subscription follows the events that re-check an MQTT connection's
// (revoke.go): a change of the thing (its model, its owner) recompiles its
// rules, and when they no longer let it subscribe to filter, or the thing
// is disabled, deleted or unlinked, or its certificate revoked, the
// subscription ends and ended gets why (wrapping ErrNotAllowed or
// ErrInactive; nil: not told), on the broker's event worker: it must
// not block. stop ends the subscription; ended may still run once while
// stop does.
func (b *Broker) SubscribeAsThing(ctx context.Context, thing, cert, filter string, deliver func(Delivered), ended func(error)) (stop func(), err error) {
	if inner, _ := topic.ShareFilter(filter); inner != filter || !topic.ValidFilter(filter) {
		return nil, fmt.Errorf("%w: %q", ErrTopic, filter)
	}
	id, g, err := b.thingGrants(ctx, thing, cert)
	if err != nil {
		return nil, err
	}
	if !g.canSubscribe(filter) {
		b.metrics.denied.WithLabelValues("subscribe").Inc()
		return nil, fmt.Errorf("%w: %q", ErrNotAllowed, filter)
	}
	t := &thingTap{id: id, filter: filter, ended: ended}
	t.g.Store(g)
	t.untap = b.server.Tap(filter, func(m *mqtt.Message) {
		if !t.g.Load().canReceive(m.Topic) {
			b.metrics.denied.WithLabelValues("deliver").Inc()
			return
		}
		deliver(delivered(m))
	})
	b.taps.add(t)
	return func() { b.taps.remove(t) }, nil
}

// RetainedAsThing is the retained message of topicName for a thing
// authenticated as for SubscribeAsThing, if its rules let it subscribe to
// and receive that topic; ok is false when none is retained.
func (b *Broker) RetainedAsThing(ctx context.Context, thing, cert, topicName string) (m Delivered, ok bool, err error) {
	if len(topicName) > maxTopic || !topic.ValidName(topicName) {
		return m, false, fmt.Errorf("%w: %q", ErrTopic, topicName)
	}
	_, g, err := b.thingGrants(ctx, thing, cert)
	if err != nil {
		return m, false, err
	}
	if !g.canSubscribe(topicName) || !g.canReceive(topicName) {
		b.metrics.denied.WithLabelValues("subscribe").Inc()
		return m, false, fmt.Errorf("%w: %q", ErrNotAllowed, topicName)
	}
	r, ok := b.server.RetainedMessage(topicName)
	if !ok {
		return m, false, nil
	}
	return delivered(r), true, nil
}

type scopesKey struct{}

// WithScopes is ctx carrying the scopes of access tokens another door
// accepted for the thing it authenticated (the CoAP gateway's /authz-info):
// the *AsThing calls add their mqtt:pub: and mqtt:sub: scopes to the
// thing's rules, as a token's on an MQTT connection; deny rules still apply.
func WithScopes(ctx context.Context, scopes []string) context.Context {
	if len(scopes) == 0 {
		return ctx
	}
	return context.WithValue(ctx, scopesKey{}, scopes)
}

// thingGrants are the topic rules of an active thing that another door
// authenticated with its certificate, as a connection of that thing gets
// them, with the scopes of ctx (WithScopes).
func (b *Broker) thingGrants(ctx context.Context, thing, cert string) (*Identity, *grants, error) {
	scopes, _ := ctx.Value(scopesKey{}).([]string)
	id := &Identity{Kind: kindThing, Thing: thing, Cert: cert, ClientIdentifier: gatewayClientID(thing), Scopes: scopes}
	if err := b.resolver.resolve(ctx, id); err != nil {
		return nil, nil, err
	}
	return id, compile(b.opts.Rules, id), nil
}

func delivered(m *mqtt.Message) Delivered {
	d := Delivered{Topic: m.Topic, Payload: m.Payload}
	if m.Props != nil {
		d.ContentType = m.Props.ContentType
	}
	return d
}

// gatewayClientID is the client identifier a thing's messages through
// another door carry (for No Local and the audit).
func gatewayClientID(thing string) string { return "coap:" + thing }
