package broker

import "github.com/thingid/thingid/internal/broker/topic"

// The broker's names for the MQTT 5 §4.7 rules of package topic, which the
// authorization server shares to judge mqtt: scopes at registration.
var (
	validTopic  = topic.ValidName
	validFilter = topic.ValidFilter
	shareFilter = topic.ShareFilter
	covers      = topic.Covers
)
