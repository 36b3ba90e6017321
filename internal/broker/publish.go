package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Errors of PublishAsThing, SubscribeAsThing and RetainedAsThing.
var (
	// ErrTopic: the topic is not a topic name (empty, a wildcard, too long).
	ErrTopic = errors.New("not an MQTT topic name")
	// ErrNotAllowed: the thing's topic rules do not let it publish there.
	ErrNotAllowed = errors.New("the thing may not publish to this topic")
	// ErrInactive: the thing is disabled or gone.
	ErrInactive = errInactive
)

// maxTopic bounds a topic name (MQTT's UTF-8 strings are at most 65,535 bytes).
const maxTopic = 65535

// PublishAsThing publishes payload on topicName for a thing that another
// door authenticated with its certificate (cert: the lower-case hex SHA-256
// of its DER), as an MQTT connection with that certificate would: the
// thing is read from the store (ErrInactive when disabled or deleted), its
// topic rules compiled (ErrNotAllowed outside them), and the message routed
// as a PUBLISH from the client identifier "coap:<thing>": every delivery
// asks the subscriber's own rules, and the other nodes of a cluster get it.
// contentType, when set, is the message's MQTT 5 content type.
func (b *Broker) PublishAsThing(ctx context.Context, thing, cert, topicName string, payload []byte, qos byte, contentType string) error {
	if len(topicName) > maxTopic || !topic.ValidName(topicName) {
		return fmt.Errorf("%w: %q", ErrTopic, topicName)
	}
	if qos > 1 {
		qos = 1 // the message is whole on arrival; QoS 2's exchange buys nothing here
	}
	_, g, err := b.thingGrants(ctx, thing, cert)
	if err != nil {
		return err
	}
	if !g.canPublish(topicName) {
		b.metrics.denied.WithLabelValues("publish").Inc()
		return fmt.Errorf("%w: %q", ErrNotAllowed, topicName)
	}
	m := &mqtt.Message{Topic: topicName, Payload: payload, QoS: qos, From: gatewayClientID(thing)}
	if contentType != "" {
		m.Props = &packet.Properties{ContentType: contentType}
		m.Props.Set(packet.PropContentType)
	}
	b.server.Publish(m)
	return nil
}
