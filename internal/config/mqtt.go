package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MQTT configures the identity message broker (docs/broker.md).
type MQTT struct {
	// Enabled starts the broker with `thingid serve`.
	Enabled bool `json:"enabled"`
	// Audience is the aud an access token must carry for the broker.
	Audience string `json:"audience"`
	// IDTokenClients are the OAuth clients whose ID tokens the broker
	// accepts as a password (the user acting through that client); empty:
	// only access tokens.
	IDTokenClients []string      `json:"idTokenClients"`
	TLS            MQTTListener  `json:"tls"`
	WebSocket      MQTTWebSocket `json:"websocket"`
	// TCP is plain MQTT, for local tools: only on a loopback address.
	TCP MQTTListener `json:"tcp"`
	// CertificateLogin lets a thing connect over mutual TLS with its device
	// certificate and no token.
	CertificateLogin bool `json:"certificateLogin"`
	// Rules grant topics to identities; placeholders are filled per connection.
	Rules  []MQTTRule `json:"rules"`
	Limits MQTTLimits `json:"limits"`
	// Dir keeps retained messages and persistent sessions; empty: $home/mqtt.
	Dir string `json:"dir"`
	// Cluster joins the brokers of several nodes (docs/deployment.md).
	Cluster MQTTCluster `json:"cluster"`
}

// MQTTCluster joins this node's broker to the other nodes' through NATS;
// an empty NATS URL: a single node.
type MQTTCluster struct {
	NATS MQTTNATS `json:"nats"`
	// Node names this node, unique in the cluster; empty: the host name.
	Node string `json:"node"`
}

// MQTTNATS is the NATS server (or cluster) the nodes share.
type MQTTNATS struct {
	// URL is nats://host:port or tls://host:port; several, comma-separated.
	URL string `json:"url"`
	// CredentialsFile is a NATS .creds file (user JWT and NKey seed).
	CredentialsFile string `json:"credentialsFile"`
	// CAFile verifies the NATS server's certificate (PEM).
	CAFile string `json:"caFile"`
	// Replicas is how many NATS servers keep each JetStream stream (the
	// claims and the retained messages): 1, or 3 (or 5) on a NATS cluster.
	Replicas int `json:"replicas"`
	// NodeTTL is how long a node's liveness key outlives its last renewal:
	// the persistent sessions of a node that died move to another node
	// between one and one and a half of it later (mqttnats.Router.NodeTTL).
	NodeTTL Duration `json:"nodeTTL"`
}

// MQTTListener is an MQTT over TCP listener.
type MQTTListener struct {
	Enabled bool   `json:"enabled"`
	Address string `json:"address"`
	// Anonymous lets clients without credentials in, with the anonymous rules.
	Anonymous bool `json:"anonymous"`
}

// MQTTWebSocket is the MQTT over WebSocket listener (path /mqtt).
type MQTTWebSocket struct {
	Enabled bool   `json:"enabled"`
	Address string `json:"address"`
	// TLS serves wss:// with the server certificate; plain ws:// only on loopback.
	TLS       bool `json:"tls"`
	Anonymous bool `json:"anonymous"`
	// AllowedOrigins are the browser origins that may connect.
	AllowedOrigins []string `json:"allowedOrigins"`
}

// MQTTRule grants topic filters to one kind of identity, and refuses those
// it denies, whatever else allows them.
type MQTTRule struct {
	// Who: thing, service, user, admin or anonymous.
	Who       string   `json:"who"`
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	Deny      MQTTDeny `json:"deny,omitzero"`
}

// MQTTDeny are the topic filters a rule refuses; a deny wins over every
// allow (of any rule or mqtt: scope).
type MQTTDeny struct {
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
}

// MQTTLimits bound what one client may cost.
type MQTTLimits struct {
	MaxPacketSize int `json:"maxPacketSize"`
	// Queue is the number of packets waiting to be written to one client.
	Queue int `json:"queue"`
	// Inflight is the number of QoS 1/2 messages kept for one client.
	Inflight       int      `json:"inflight"`
	SessionExpiry  Duration `json:"sessionExpiry"`
	ConnectTimeout Duration `json:"connectTimeout"`
	// ConnectionsPerAddress is the most connections one client address
	// (IPv6: one /64) keeps open on each listener; more are closed at once.
	// Devices behind one NAT share an address.
	ConnectionsPerAddress int `json:"connectionsPerAddress"`
}

func defaultMQTT() MQTT {
	return MQTT{
		Enabled:   true,
		Audience:  "urn:thingid:mqtt",
		TLS:       MQTTListener{Enabled: true, Address: "127.0.0.1:8883"},
		WebSocket: MQTTWebSocket{Address: "127.0.0.1:8884", TLS: true},
		TCP:       MQTTListener{Address: "127.0.0.1:1883"},
		Rules: []MQTTRule{
			{Who: "thing", Publish: []string{"things/${thing.id}/#"}, Subscribe: []string{"things/${thing.id}/commands/#"}},
			{Who: "user", Subscribe: []string{"things/${owned.thing.id}/#"}},
			{Who: "admin", Subscribe: []string{"$SYS/#"}},
		},
		Limits: MQTTLimits{
			MaxPacketSize:  256 << 10,
			Queue:          1024,
			Inflight:       1000,
			SessionExpiry:  Duration(7 * 24 * time.Hour),
			ConnectTimeout: Duration(10 * time.Second),

			ConnectionsPerAddress: 1000,
		},
		Cluster: MQTTCluster{NATS: MQTTNATS{Replicas: 1, NodeTTL: Duration(15 * time.Second)}},
	}
}

// validate checks the section; home is the data directory.
func (c *MQTT) validate(home string) error {
	if c.Dir == "" {
		c.Dir = filepath.Join(home, "mqtt")
	}
	if c.Audience == "" {
		return fmt.Errorf("mqtt.audience: required (the aud of tokens for the broker)")
	}
	for i, id := range c.IDTokenClients {
		switch {
		case id == "":
			return fmt.Errorf("mqtt.idTokenClients[%d]: empty client id", i)
		case id == c.Audience:
			return fmt.Errorf("mqtt.idTokenClients[%d]: %q is the broker's audience, not a client", i, id)
		case slices.Contains(c.IDTokenClients[:i], id):
			return fmt.Errorf("mqtt.idTokenClients[%d]: %q is listed twice", i, id)
		}
	}
	for _, l := range []struct {
		name     string
		enabled  bool
		address  string
		loopback bool // plain text: tokens must not cross a network
	}{
		{"mqtt.tls", c.TLS.Enabled, c.TLS.Address, false},
		{"mqtt.websocket", c.WebSocket.Enabled, c.WebSocket.Address, !c.WebSocket.TLS},
		{"mqtt.tcp", c.TCP.Enabled, c.TCP.Address, true},
	} {
		host, _, err := net.SplitHostPort(l.address)
		if err != nil {
			return fmt.Errorf("%s.address: %q is not host:port (%v)", l.name, l.address, err)
		}
		if l.enabled && l.loopback && !mqttLoopback(host) {
			return fmt.Errorf("%s.address: %q: plain-text MQTT carries tokens in clear, so it listens on a loopback address only (use mqtt.tls)", l.name, l.address)
		}
	}
	if c.Enabled && !c.TLS.Enabled && !c.WebSocket.Enabled && !c.TCP.Enabled {
		return fmt.Errorf("mqtt.enabled: no listener is enabled (mqtt.tls, mqtt.websocket, mqtt.tcp)")
	}
	for _, o := range c.WebSocket.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("mqtt.websocket.allowedOrigins: %q is not an origin such as https://app.example.com", o)
		}
	}
	for i, r := range c.Rules {
		switch r.Who {
		case "thing", "service", "user", "admin", "anonymous":
		default:
			return fmt.Errorf("mqtt.rules[%d].who: %q is not thing, service, user, admin or anonymous", i, r.Who)
		}
		if len(r.Publish)+len(r.Subscribe)+len(r.Deny.Publish)+len(r.Deny.Subscribe) == 0 {
			return fmt.Errorf("mqtt.rules[%d]: grants and denies nothing (give publish, subscribe or deny filters)", i)
		}
	}
	if err := c.Cluster.validate(); err != nil {
		return err
	}
	l := c.Limits
	switch {
	case l.MaxPacketSize < 1<<10 || l.MaxPacketSize > 256<<20:
		return fmt.Errorf("mqtt.limits.maxPacketSize: %d is outside 1 KiB..256 MiB", l.MaxPacketSize)
	case l.Queue < 8 || l.Queue > 65535:
		return fmt.Errorf("mqtt.limits.queue: %d is outside 8..65535", l.Queue)
	case l.Inflight < 1 || l.Inflight > 65535:
		return fmt.Errorf("mqtt.limits.inflight: %d is outside 1..65535", l.Inflight)
	case l.SessionExpiry < 0:
		return fmt.Errorf("mqtt.limits.sessionExpiry: must not be negative")
	case l.ConnectTimeout < Duration(time.Second) || l.ConnectTimeout > Duration(time.Minute):
		return fmt.Errorf("mqtt.limits.connectTimeout: must be between 1s and 1m")
	case l.ConnectionsPerAddress < 1:
		return fmt.Errorf("mqtt.limits.connectionsPerAddress: must be at least 1")
	}
	return nil
}

func (c *MQTTCluster) validate() error {
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		// JetStream's limit; an even number adds a copy and no tolerance.
		return fmt.Errorf("mqtt.cluster.nats.replicas: must be between 1 and 5, not %d", c.NATS.Replicas)
	}
	if c.NATS.NodeTTL < Duration(6*time.Second) || c.NATS.NodeTTL > Duration(10*time.Minute) {
		// Below 6 s a node cut off from NATS, which notices within 5.5 s
		// and then ends its MQTT connections, could see its sessions taken
		// while its clients are still connected to it.
		return fmt.Errorf("mqtt.cluster.nats.nodeTTL: must be between 6s and 10m, not %s", time.Duration(c.NATS.NodeTTL))
	}
	if c.NATS.URL == "" {
		if c.NATS.CredentialsFile != "" || c.NATS.CAFile != "" {
			return fmt.Errorf("mqtt.cluster.nats.url: required with credentialsFile or caFile")
		}
		return nil
	}
	for u := range strings.SplitSeq(c.NATS.URL, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err != nil || (p.Scheme != "nats" && p.Scheme != "tls") || p.Host == "" {
			return fmt.Errorf("mqtt.cluster.nats.url: %q is not nats://host:port or tls://host:port", u)
		}
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("mqtt.cluster.node: required, the host name is unknown (%v)", err)
		}
		c.Node = h
	}
	return nil
}

func mqttLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
