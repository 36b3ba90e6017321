package config

import (
	"fmt"
	"net"
	"time"
)

// CoAP configures the CoAP gateway (docs/coap.md): constrained things over
// DTLS 1.2 with their factory certificates.
type CoAP struct {
	// Enabled starts the gateway with `thingid serve`.
	Enabled bool `json:"enabled"`
	// DTLSAddress serves CoAP over DTLS (coaps://).
	DTLSAddress string `json:"dtlsAddress"`
	// UDPAddress serves CoAP without DTLS for local tools; a loopback
	// address or empty (not served).
	UDPAddress string     `json:"udpAddress"`
	Limits     CoAPLimits `json:"limits"`
}

// CoAPLimits bound what the gateway holds.
type CoAPLimits struct {
	// MaxSessions is the most DTLS sessions held at once.
	MaxSessions int `json:"maxSessions"`
	// HandshakeTimeout bounds one DTLS handshake.
	HandshakeTimeout Duration `json:"handshakeTimeout"`
	// HandshakesPerSecond and HandshakeBurst bound the new DTLS
	// associations of one client address.
	HandshakesPerSecond float64 `json:"handshakesPerSecond"`
	HandshakeBurst      int     `json:"handshakeBurst"`
}

func defaultCoAP() CoAP {
	return CoAP{
		DTLSAddress: ":5684",
		UDPAddress:  "127.0.0.1:5683",
		Limits: CoAPLimits{MaxSessions: 10000, HandshakeTimeout: Duration(10 * time.Second),
			HandshakesPerSecond: 5, HandshakeBurst: 20},
	}
}

// validate checks the section when the gateway is on.
func (c *CoAP) validate() error {
	if !c.Enabled {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.DTLSAddress); err != nil {
		return fmt.Errorf("coap.dtlsAddress: %q is not host:port: %w", c.DTLSAddress, err)
	}
	if c.UDPAddress != "" {
		host, _, err := net.SplitHostPort(c.UDPAddress)
		if err != nil {
			return fmt.Errorf("coap.udpAddress: %q is not host:port: %w", c.UDPAddress, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("coap.udpAddress: %q is not a loopback address (CoAP without DTLS is for local tools only)", c.UDPAddress)
		}
	}
	switch {
	case c.Limits.MaxSessions < 1:
		return fmt.Errorf("coap.limits.maxSessions: at least 1")
	case time.Duration(c.Limits.HandshakeTimeout) < time.Second:
		return fmt.Errorf("coap.limits.handshakeTimeout: at least 1s")
	case !(c.Limits.HandshakesPerSecond > 0):
		return fmt.Errorf("coap.limits.handshakesPerSecond: must be above 0")
	case c.Limits.HandshakeBurst < 1:
		return fmt.Errorf("coap.limits.handshakeBurst: at least 1")
	}
	return nil
}
