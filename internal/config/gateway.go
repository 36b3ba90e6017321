package config

// Gateway configures gateway.
type Gateway struct{}

func defaultGateway() Gateway { return Gateway{} }

// validate checks the section; home is the data directory.
func (c *Gateway) validate(home string) error { return nil }
