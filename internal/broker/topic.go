package broker

import "github.com/thingid/thingid/internal/broker/topic"

// validFilter is the MQTT 5 §4.7 rule of package topic, which the
// authorization server shares to judge mqtt: scopes at registration.
var validFilter = topic.ValidFilter
