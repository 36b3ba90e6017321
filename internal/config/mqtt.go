package config

// MQTT configures mqtt.
type MQTT struct{}

func defaultMQTT() MQTT { return MQTT{} }

// validate checks the section; home is the data directory.
func (c *MQTT) validate(home string) error { return nil }
