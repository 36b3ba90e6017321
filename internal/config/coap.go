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
	// MaxObservers and ObserversPerSession bound the observations of
	// broker topics (GET /mqtt/TOPIC with Observe) in all and per session.
	MaxObservers        int `json:"maxObservers"`
	ObserversPerSession int `json:"observersPerSession"`
	// MaxBody bounds a request's body, block-wise transfers included.
	MaxBody int `json:"maxBody"`
	// BlockTransfers bounds the unfinished block-wise request transfers of
	// one session, BlockTimeout how long one may take.
	BlockTransfers int      `json:"blockTransfers"`
	BlockTimeout   Duration `json:"blockTimeout"`
}

func defaultCoAP() CoAP {
	return CoAP{
		DTLSAddress: "127.0.0.1:5684", // loopback like every listener; devices on a network need it set
		UDPAddress:  "127.0.0.1:5683",
		Limits: CoAPLimits{MaxSessions: 10000, HandshakeTimeout: Duration(10 * time.Second),
			HandshakesPerSecond: 5, HandshakeBurst: 20, MaxObservers: 10000, ObserversPerSession: 8,
			MaxBody: 256 << 10, BlockTransfers: 4, BlockTimeout: Duration(30 * time.Second)},
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
	case c.Limits.MaxObservers < 1:
		return fmt.Errorf("coap.limits.maxObservers: at least 1")
	case c.Limits.ObserversPerSession < 1:
		return fmt.Errorf("coap.limits.observersPerSession: at least 1")
	case c.Limits.MaxBody < 1024:
		return fmt.Errorf("coap.limits.maxBody: at least 1024 (one block)")
	case c.Limits.BlockTransfers < 1:
		return fmt.Errorf("coap.limits.blockTransfers: at least 1")
	case time.Duration(c.Limits.BlockTimeout) < time.Second:
		return fmt.Errorf("coap.limits.blockTimeout: at least 1s")
	}
	return nil
}
