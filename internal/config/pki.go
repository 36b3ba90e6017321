package config

// PKI configures pki.
type PKI struct{}

func defaultPKI() PKI { return PKI{} }

// validate checks the section; home is the data directory.
func (c *PKI) validate(home string) error { return nil }
