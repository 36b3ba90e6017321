package config

import (
	"fmt"
	"net"
	"time"
)

// LDAP configures the directory's LDAPv3 listeners (docs/ldap.md): the
// users, things and groups of the store for LDAP clients.
type LDAP struct {
	// Enabled starts the LDAP listeners with `thingid serve`.
	Enabled bool `json:"enabled"`
	// BaseDN is the naming context; people, devices and groups are below it.
	BaseDN string `json:"baseDN"`
	// LDAPSAddress serves LDAP over TLS (ldaps://); empty: not served.
	LDAPSAddress string `json:"ldapsAddress"`
	// StartTLSAddress serves LDAP that turns to TLS with StartTLS
	// (ldap://); empty: not served.
	StartTLSAddress string     `json:"startTLSAddress"`
	Limits          LDAPLimits `json:"limits"`
	// ServiceAccounts are the OAuth clients that may bind as
	// cn=<client_id>,ou=services,<baseDN> with their secret, each with the
	// ous it reads (people, devices, groups). A client not listed binds to
	// nothing; by default none is.
	ServiceAccounts map[string][]string `json:"serviceAccounts"`
}

// LDAPLimits bound what one LDAP client may cost.
type LDAPLimits struct {
	// MaxMessageBytes is the largest LDAP message a client may send.
	MaxMessageBytes int `json:"maxMessageBytes"`
	// IdleTimeout closes a session that sends nothing for that long.
	IdleTimeout Duration `json:"idleTimeout"`
	// ReadTimeout is how long a client has to finish sending a message it
	// began, and to read an answer.
	ReadTimeout Duration `json:"readTimeout"`
	// ConnectionsPerAddress is the most connections one client address
	// (IPv6: one /64) keeps open on each LDAP listener.
	ConnectionsPerAddress int `json:"connectionsPerAddress"`
	// SizeLimit is the most entries one search returns; TimeLimit the
	// longest one runs. A client may ask for less, never more.
	SizeLimit int      `json:"sizeLimit"`
	TimeLimit Duration `json:"timeLimit"`
}

func defaultLDAP() LDAP {
	return LDAP{
		BaseDN:          "dc=thingid,dc=local",
		LDAPSAddress:    "127.0.0.1:1636",
		StartTLSAddress: "127.0.0.1:1389",
		Limits: LDAPLimits{
			MaxMessageBytes:       256 << 10,
			IdleTimeout:           Duration(5 * time.Minute),
			ReadTimeout:           Duration(30 * time.Second),
			ConnectionsPerAddress: 64,
			SizeLimit:             1000,
			TimeLimit:             Duration(time.Minute),
		},
	}
}

// validate checks the section when the listeners are on.
func (c *LDAP) validate() error {
	if !c.Enabled {
		return nil
	}
	if c.LDAPSAddress == "" && c.StartTLSAddress == "" {
		return fmt.Errorf("ldap.ldapsAddress, ldap.startTLSAddress: at least one is required when ldap.enabled")
	}
	for _, a := range []struct{ field, addr string }{{"ldap.ldapsAddress", c.LDAPSAddress}, {"ldap.startTLSAddress", c.StartTLSAddress}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %w", a.field, a.addr, err)
		}
	}
	if _, port, _ := net.SplitHostPort(c.LDAPSAddress); port != "0" && c.LDAPSAddress != "" && c.LDAPSAddress == c.StartTLSAddress {
		return fmt.Errorf("ldap.startTLSAddress: %q is ldap.ldapsAddress too", c.StartTLSAddress)
	}
	for id, ous := range c.ServiceAccounts {
		if id == "" {
			return fmt.Errorf("ldap.serviceAccounts: a client_id is empty")
		}
		for _, ou := range ous {
			if ou != "people" && ou != "devices" && ou != "groups" {
				return fmt.Errorf("ldap.serviceAccounts.%s: %q is not one of people, devices, groups", id, ou)
			}
		}
	}
	l := c.Limits
	switch {
	case l.MaxMessageBytes < 1024 || l.MaxMessageBytes > 64<<20:
		return fmt.Errorf("ldap.limits.maxMessageBytes: %d is outside 1024..67108864", l.MaxMessageBytes)
	case time.Duration(l.IdleTimeout) < time.Second:
		return fmt.Errorf("ldap.limits.idleTimeout: at least 1s")
	case time.Duration(l.ReadTimeout) < time.Second:
		return fmt.Errorf("ldap.limits.readTimeout: at least 1s")
	case l.ConnectionsPerAddress < 0:
		return fmt.Errorf("ldap.limits.connectionsPerAddress: %d is negative", l.ConnectionsPerAddress)
	case l.SizeLimit < 1:
		return fmt.Errorf("ldap.limits.sizeLimit: at least 1")
	case time.Duration(l.TimeLimit) < time.Second:
		return fmt.Errorf("ldap.limits.timeLimit: at least 1s")
	}
	return nil
}
