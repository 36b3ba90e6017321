// Package mqttlink is the MQTT side the thingid examples share: one MQTT 5
// connection to thingid's broker, over TLS with the device certificate when
// there is one, authenticated by an access token sent as Authentication Data
// under the method JWT, so that a fresh token can replace it without
// reconnecting (re-authentication, MQTT 5 §4.12.1). It knows nothing of the
// platform's internals: only MQTT, TLS and a token.
package mqttlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// AuthMethod is the MQTT 5 Authentication Method under which thingid's broker
// takes an access token (docs/broker.md).
const AuthMethod = "JWT"

// MQTT 5 reason codes the examples act on (MQTT 5 §2.4).
const (
	codeReAuthenticate = 0x19
	codeContinueAuth   = 0x18
	// CodeNotAuthorized is what the broker answers when what the
	// connection stands on was revoked (a grant, an owner link).
	CodeNotAuthorized = 0x87
	// CodeBadCredentials is a token the broker does not accept.
	CodeBadCredentials = 0x86
)

// Config says where the broker is and who connects.
type Config struct {
	// Broker is mqtts://host[:port] (TLS, port 8883 by default) or
	// mqtt://host[:port] (plain text, port 1883; thingid serves it on
	// loopback only).
	Broker string
	// RootCAs verify the broker's TLS certificate; nil uses the system's.
	RootCAs *x509.CertPool
	// Certificate is presented at the TLS handshake: the device certificate
	// a certificate-bound token needs (RFC 8705). Nil for a client without one.
	Certificate *tls.Certificate
	// ClientID is the MQTT client identifier: a thing's must be its thing id.
	ClientID string
	// Token is the access token the connection authenticates with.
	Token string
	// Subscribe lists the topic filters subscribed to (QoS 1) once connected.
	Subscribe []string
	// OnMessage receives every message delivered to the connection, in
	// order, on one goroutine; the broker's next messages wait while it runs.
	OnMessage func(topic string, payload []byte)
	// Timeout bounds each wait: the TCP and TLS handshake, CONNACK, SUBACK,
	// PUBACK, the answer to a re-authentication; 0 means 10 seconds.
	Timeout time.Duration
}

// Conn is one MQTT connection. Its methods are safe for concurrent use.
type Conn struct {
	cfg    Config
	client *paho.Client

	// inbox hands messages from paho to deliver, so that a slow OnMessage
	// never holds paho (whose shutdown waits for its handlers).
	inbox  chan Message
	once   sync.Once
	done   chan struct{}
	mu     sync.Mutex
	reason error  // why the connection ended
	token  string // the token the connection runs on
}

// RefusedError is a CONNECT the broker refused.
type RefusedError struct {
	Code   byte   // the CONNACK reason code
	Reason string // the broker's reason string, if it sent one
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the broker refused the connection: %s", describe(e.Code, e.Reason))
}

// ClosedError says why an established connection ended.
type ClosedError struct {
	// Code is the reason code of the broker's DISCONNECT; 0 when the
	// connection was lost without one (Err says how).
	Code   byte
	Reason string
	Err    error
}

func (e *ClosedError) Error() string {
	if e.Code == 0 && e.Err != nil {
		return "the connection to the broker was lost: " + e.Err.Error()
	}
	return "the broker closed the connection: " + describe(e.Code, e.Reason)
}

func (e *ClosedError) Unwrap() error { return e.Err }

// Revoked tells whether err is the broker saying the identity is no longer
// allowed: a CONNECT refused, or a connection ended, as not authorized or
// with credentials it no longer accepts.
func Revoked(err error) bool {
	var re *RefusedError
	var ce *ClosedError
	switch {
	case errors.As(err, &re):
		return re.Code == CodeNotAuthorized || re.Code == CodeBadCredentials
	case errors.As(err, &ce):
		return ce.Code == CodeNotAuthorized
	}
	return false
}

func describe(code byte, reason string) string {
	s := fmt.Sprintf("reason code 0x%02X", code)
	if name := codeNames[code]; name != "" {
		s += " (" + name + ")"
	}
	if reason != "" {
		s += ": " + reason
	}
	return s
}

// codeNames are the MQTT 5 reason codes a client of thingid's broker meets.
var codeNames = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x85: "client identifier not valid", 0x86: "bad user name or password",
	0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy",
	0x8B: "server shutting down", 0x8C: "bad authentication method",
	0x8E: "session taken over", 0x95: "packet too large", 0x97: "quota exceeded",
	0x98: "administrative action", 0xA0: "maximum connect time",
}

// Dial connects to the broker, authenticates with cfg.Token and subscribes
// to cfg.Subscribe. Every step waits at most cfg.Timeout and says which
// step timed out; the caller's message names the broker.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	addr, tlsConf, err := target(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" || cfg.Token == "" {
		return nil, errors.New("mqttlink: a client identifier and a token are required")
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var raw net.Conn
	if tlsConf != nil {
		raw, err = (&tls.Dialer{Config: tlsConf}).DialContext(dctx, "tcp", addr)
	} else {
		raw, err = (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the connection: %w", err)
	}
	c := &Conn{cfg: cfg, done: make(chan struct{}), inbox: make(chan Message), token: cfg.Token}
	go c.deliver()
	c.client = paho.NewClient(paho.ClientConfig{
		// paho writes from several goroutines (pings, acks, AUTH).
		Conn:          packets.NewThreadSafeConn(raw),
		AuthHandler:   jwtAuth{},
		PacketTimeout: cfg.Timeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.inbox <- Message{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload}:
			case <-c.done:
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			ce := &ClosedError{Code: d.ReasonCode}
			if d.Properties != nil {
				ce.Reason = d.Properties.ReasonString
			}
			c.end(ce)
		},
		OnClientError: func(err error) { c.end(&ClosedError{Err: err}) },
	})
	ca, err := c.client.Connect(dctx, &paho.Connect{
		ClientID:   cfg.ClientID,
		KeepAlive:  30,
		CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(cfg.Token)},
	})
	if err != nil {
		c.end(nil)
		raw.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			re := &RefusedError{Code: ca.ReasonCode}
			if ca.Properties != nil {
				re.Reason = ca.Properties.ReasonString
			}
			return nil, re
		}
		return nil, fmt.Errorf("waiting for the broker to accept the connection (CONNACK): %w", err)
	}
	if len(cfg.Subscribe) > 0 {
		if err := c.subscribe(ctx, cfg.Subscribe); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// target is the broker's address and, for mqtts, the TLS configuration.
func target(cfg Config) (string, *tls.Config, error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", nil, fmt.Errorf("mqttlink: broker %q must be mqtts://host[:port] or mqtt://host[:port]", cfg.Broker)
	}
	port := u.Port()
	switch u.Scheme {
	case "mqtts":
		if port == "" {
			port = "8883"
		}
		tc := &tls.Config{RootCAs: cfg.RootCAs, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if cfg.Certificate != nil {
			cert := cfg.Certificate
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return net.JoinHostPort(u.Hostname(), port), tc, nil
	case "mqtt":
		if port == "" {
			port = "1883"
		}
		return net.JoinHostPort(u.Hostname(), port), nil, nil
	}
	return "", nil, fmt.Errorf("mqttlink: broker %q: the scheme must be mqtts (TLS) or mqtt (plain, loopback)", cfg.Broker)
}

func (c *Conn) subscribe(ctx context.Context, filters []string) error {
	sctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := c.client.Subscribe(sctx, s)
	if ack == nil {
		return fmt.Errorf("waiting for the broker to confirm the subscription to %s (SUBACK): %w", strings.Join(filters, ", "), err)
	}
	for i, code := range ack.Reasons {
		if code >= 0x80 && i < len(filters) {
			reason := ""
			if ack.Properties != nil {
				reason = ack.Properties.ReasonString
			}
			return fmt.Errorf("the broker refused the subscription to %s: %s", filters[i], describe(code, reason))
		}
	}
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", strings.Join(filters, ", "), err)
	}
	return nil
}

// Publish sends payload to topic at QoS 1 and waits for the broker's PUBACK.
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte) error {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.client.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if err != nil {
		if resp != nil && resp.ReasonCode >= 0x80 {
			reason := ""
			if resp.Properties != nil {
				reason = resp.Properties.ReasonString
			}
			return fmt.Errorf("the broker refused the message to %s: %s", topic, describe(resp.ReasonCode, reason))
		}
		return fmt.Errorf("publishing to %s (waiting for PUBACK): %w", topic, err)
	}
	return nil
}

// Reauthenticate replaces the connection's token with a fresh one without
// reconnecting (MQTT 5 §4.12.1): AUTH with reason code 0x19 and the token
// as Authentication Data. The broker answers AUTH success, or DISCONNECT
// when it refuses the token (the connection is then over).
func (c *Conn) Reauthenticate(ctx context.Context, token string) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.client.Authenticate(actx, &paho.Auth{
		ReasonCode: codeReAuthenticate,
		Properties: &paho.AuthProperties{AuthMethod: AuthMethod, AuthData: []byte(token)},
	})
	if err != nil {
		return fmt.Errorf("re-authenticating with the broker (waiting for AUTH): %w", err)
	}
	if !resp.Success {
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		return fmt.Errorf("the broker refused the new token: %s", describe(resp.ReasonCode, reason))
	}
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
	return nil
}

// ErrNewCertificate: the token is bound to a certificate the connection did
// not present; only a new connection (a new TLS handshake) can use it.
var ErrNewCertificate = errors.New("mqttlink: the device certificate changed: reconnect")

// Renew makes the connection run on token: nothing to do when it already
// does, a re-authentication when cert is the certificate the connection
// presented (nil for a client without one), ErrNewCertificate otherwise.
// It tells whether it re-authenticated.
func (c *Conn) Renew(ctx context.Context, token string, cert *x509.Certificate) (bool, error) {
	c.mu.Lock()
	same := token == c.token
	c.mu.Unlock()
	if same {
		return false, nil
	}
	if presented := c.cfg.Certificate; (presented == nil) != (cert == nil) || (cert != nil && !cert.Equal(presented.Leaf)) {
		return false, ErrNewCertificate
	}
	return true, c.Reauthenticate(ctx, token)
}

// LoadCertificate reads the device's key and certificate for the TLS
// handshake from the files the SDK keeps, and checks that the certificate
// is want (the SDK's current one): during a renewal the SDK replaces the
// files, and reading them half-way would pair a key with the wrong
// certificate.
func LoadCertificate(certFile, keyFile string, want *x509.Certificate) (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the device certificate: %w", err)
	}
	if want != nil && !pair.Leaf.Equal(want) {
		return nil, errors.New("the device certificate is being renewed; try again")
	}
	return &pair, nil
}

// Retry calls connect until it succeeds, the broker refuses the identity
// (Revoked), ctx ends or retryFor has passed, waiting 1 s, 2 s, 4 s … (at
// most 30 s) between attempts; report hears of each failure and the wait.
func Retry(ctx context.Context, retryFor time.Duration, report func(err error, wait time.Duration), connect func() error) error {
	deadline := time.Now().Add(retryFor)
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := connect()
		if err == nil || Revoked(err) || ctx.Err() != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not connected for %s: %w", retryFor, err)
		}
		report(err, wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Message is an MQTT message delivered to the connection.
type Message struct {
	Topic   string
	Payload []byte
}

// deliver calls OnMessage with each message, in order, until the
// connection ends.
func (c *Conn) deliver() {
	for {
		select {
		case m := <-c.inbox:
			if c.cfg.OnMessage != nil {
				c.cfg.OnMessage(m.Topic, m.Payload)
			}
		case <-c.done:
			return
		}
	}
}

// Done is closed when the connection has ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (a *ClosedError), nil while it lasts or
// after Close.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Close sends DISCONNECT and closes the connection.
func (c *Conn) Close() error {
	c.end(nil) // before paho notices its own closing as an error
	return c.client.Disconnect(&paho.Disconnect{ReasonCode: 0})
}

func (c *Conn) end(reason error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.reason = reason
		c.mu.Unlock()
		close(c.done)
	})
}

// jwtAuth answers the broker's AUTH packets. thingid's broker takes the token
// in CONNECT or in the client's AUTH and never asks for more, so there is
// nothing to continue with: an unexpected challenge gets an empty answer,
// which the broker refuses.
type jwtAuth struct{}

func (jwtAuth) Authenticate(*paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: codeContinueAuth, Properties: &paho.AuthProperties{AuthMethod: AuthMethod}}
}

func (jwtAuth) Authenticated() {}

var _ paho.Auther = jwtAuth{}
