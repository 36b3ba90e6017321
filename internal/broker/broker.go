// Package broker is thingid's identity message broker: MQTT 3.1.1 and 5 on
// thingid's own core (internal/mqtt), where every CONNECT is authenticated with a platform token or a
// device certificate, every PUBLISH, SUBSCRIBE and delivery is checked against
// rules compiled for that identity, and revocations end connections at once.
// It verifies tokens through internal/tokens and reads identities through a
// small interface; it never imports oauth and never changes identities.
package broker

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// AuthMethod is the MQTT 5 Authentication Method under which a client sends
// its access token as Authentication Data, in CONNECT or in AUTH to
// re-authenticate (MQTT 5 §4.12). Clients may instead send the token as the
// CONNECT password; only the former can re-authenticate.
const AuthMethod = "JWT"

// TokenVerifier checks access tokens, with their sender binding, and ID
// tokens (*tokens.Verifier).
type TokenVerifier interface {
	Verify(ctx context.Context, p *tokens.Presentation, opts tokens.VerifyOptions) (*tokens.Claims, error)
	VerifyIDToken(ctx context.Context, raw string, opts tokens.IDTokenOptions) (*tokens.Claims, error)
}

// Limits bound what one client may cost.
type Limits struct {
	// MaxPacketSize in bytes, announced in CONNACK (MQTT 5 Maximum Packet
	// Size); a larger packet ends the connection (MQTT 5: DISCONNECT 0x95).
	MaxPacketSize int
	// Queue is the number of packets waiting to be written to one client; a
	// QoS 0 message finding it full is dropped and counted.
	Queue int
	// Inflight is the number of QoS 1 and 2 messages held for one client,
	// connected or not, sent or waiting for the client's Receive Maximum;
	// beyond it new ones are dropped and counted.
	Inflight int
	// SessionExpiry caps how long a disconnected persistent session is kept.
	SessionExpiry time.Duration
	// ConnectTimeout is how long a new connection has to finish TLS and send CONNECT.
	ConnectTimeout time.Duration
	// ConnectionsPerAddress is the most connections one client address
	// keeps open on each listener; more are closed before TLS.
	ConnectionsPerAddress int
}

// Options configures Start. Listeners, Audience, Verifier, Directory and Dir
// are required.
type Options struct {
	Listeners []Listener
	// Audience is the aud an access token must carry to be accepted here.
	Audience string
	// IDTokenClients are the clients whose ID tokens are accepted as a
	// password: the user acting through that client, with the rules for
	// users and no scopes. Empty: ID tokens are refused.
	IDTokenClients []string
	Verifier       TokenVerifier
	// VerifyCertificate checks a client certificate chain (leaf first) and
	// returns the active thing it identifies (certauth). Needed for
	// CertificateLogin; tokens bound to a certificate need only the
	// certificate's thumbprint.
	VerifyCertificate func(ctx context.Context, chain []*x509.Certificate) (thingID string, err error)
	// CertificateLogin lets a thing connect over mutual TLS without a token.
	CertificateLogin bool
	Directory        Directory
	// IsAdministrator confirms that a user whose token carries the admin
	// scope is an administrator; nil: such users are not.
	IsAdministrator func(ctx context.Context, userID string) (bool, error)
	// Policies decide what a thing acting for a user may do (households);
	// nil: a thing acts only for its owner, and the topic rules alone
	// decide. With them, a member of the household a thing is placed in may
	// act through it too, as its rules allow.
	Policies Policies
	Rules    []Rule
	Limits   Limits
	// Dir holds the persistence file (retained messages and sessions).
	Dir string
	// Bus delivers revocations and identity changes; nil: none.
	Bus *events.Bus
	// Audit receives denials (store.Store); nil: not recorded.
	Audit Auditor
	// Metrics registers the broker's metrics; nil: not registered.
	Metrics prometheus.Registerer
	// Connections is the process's accounting of connections, which every
	// listener accepts through; nil: the broker's own.
	Connections *netlimit.Limiter
	// Cluster, when set, joins this broker to the other nodes' (mqttnats):
	// Start starts it, Close closes it; when Start fails, the caller does.
	Cluster Cluster
	Log     *slog.Logger
	Now     func() time.Time // time.Now when nil
}

// Auditor appends audit records (store.Audit).
type Auditor interface {
	AppendAudit(ctx context.Context, recs ...store.AuditRecord) error
}

// Broker is a running broker; Close it when done.
type Broker struct {
	opts      Options
	log       *slog.Logger
	server    *mqtt.Server
	auth      *auth
	store     *mqtt.Bolt
	listeners map[string]*netListener
	cluster   Cluster
	metrics   *metrics
	audit     *auditLog
	resolver  *resolver
	workers   *workers
	taps      thingTaps // subscriptions of things through other doors (thingtap.go)
	stopOnce  sync.Once
	stop      context.CancelFunc
}

// Defaults of Limits.
const (
	defaultMaxPacketSize  = 256 << 10
	defaultQueue          = 1024
	defaultInflight       = 1000
	defaultSessionExpiry  = 7 * 24 * time.Hour
	defaultConnectTimeout = 10 * time.Second
	defaultPerAddress     = 1000
)

// Start opens the persistence file, restores sessions and retained
// messages, and starts serving the listeners.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	switch {
	case opts.Audience == "", opts.Verifier == nil, opts.Directory == nil, opts.Dir == "":
		return nil, errors.New("broker: Audience, Verifier, Directory and Dir are required")
	case len(opts.Listeners) == 0:
		return nil, errors.New("broker: no listener")
	}
	if err := CheckRules(opts.Rules); err != nil {
		return nil, err
	}
	if slices.Contains(opts.IDTokenClients, "") || slices.Contains(opts.IDTokenClients, opts.Audience) {
		return nil, errors.New("broker: IDTokenClients must name clients, not be empty or the broker's audience")
	}
	l := &opts.Limits
	l.MaxPacketSize = cmp.Or(l.MaxPacketSize, defaultMaxPacketSize)
	l.Queue = cmp.Or(l.Queue, defaultQueue)
	l.Inflight = cmp.Or(l.Inflight, defaultInflight)
	l.SessionExpiry = cmp.Or(l.SessionExpiry, defaultSessionExpiry)
	l.ConnectTimeout = cmp.Or(l.ConnectTimeout, defaultConnectTimeout)
	l.ConnectionsPerAddress = cmp.Or(l.ConnectionsPerAddress, defaultPerAddress)
	if l.MaxPacketSize < 64 || l.Queue < 1 || l.Inflight < 1 || l.Inflight > math.MaxUint16 || l.SessionExpiry < 0 || l.ConnectTimeout < 0 {
		return nil, fmt.Errorf("broker: limits out of range: %+v", *l)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := cmp.Or(opts.Log, slog.Default()).With("component", "broker")
	if opts.Connections == nil {
		var err error
		if opts.Connections, err = netlimit.New(netlimit.Options{Log: log, Registerer: opts.Metrics}); err != nil {
			return nil, err
		}
	}

	b := &Broker{opts: opts, log: log, listeners: map[string]*netListener{}, resolver: newResolver(opts.Directory, opts.IsAdministrator, opts.Rules, opts.Policies != nil), workers: newWorkers()}
	b.metrics = newMetrics()
	var err error
	if b.store, err = openPersistence(opts.Dir); err != nil {
		b.workers.stop()
		return nil, err
	}
	fail := func(err error) (*Broker, error) {
		b.closeListeners()
		if b.server != nil {
			b.server.Close()
		}
		b.store.Close()
		b.workers.stop()
		return nil, err
	}
	for _, lc := range opts.Listeners {
		nl, err := newListener(lc, l.ConnectTimeout, opts.Connections, l.ConnectionsPerAddress, log)
		if err != nil {
			return fail(err)
		}
		b.listeners[lc.Name] = nl
	}
	ctx, b.stop = context.WithCancel(ctx)
	b.audit = newAuditLog(ctx, opts.Audit, log, b.metrics)
	b.auth = &auth{b: b, ctx: ctx}
	b.auth.expiries = newExpiries(b.auth.expire)
	// A cluster's nodes keep the persistent sessions together, so that a
	// client resumes its session on any of them.
	sessions := mqtt.Store(b.store)
	if opts.Cluster != nil {
		if sessions, err = opts.Cluster.Sessions(l.Inflight, l.SessionExpiry); err != nil {
			b.stop()
			return fail(err)
		}
	}
	b.server, err = mqtt.New(mqtt.Config{
		Auth:             b.auth,
		MaxPacketSize:    l.MaxPacketSize,
		Inflight:         l.Inflight,
		Queue:            l.Queue,
		MaxSessionExpiry: l.SessionExpiry,
		ConnectTimeout:   l.ConnectTimeout,
		Store:            sessions,
		Identity:         b.auth,
		Remote:           remote(opts.Cluster),
		Log:              log,
	})
	if err != nil { // restoring the stored sessions; no listener yet
		b.stop()
		return fail(fmt.Errorf("broker: restore sessions from %s: %w", opts.Dir, err))
	}
	b.auth.restore(ctx)
	b.server.StartWills()
	if opts.Cluster != nil {
		if err := opts.Cluster.Start(b.server); err != nil {
			b.stop()
			return fail(err)
		}
		b.cluster = opts.Cluster
	}
	if opts.Metrics != nil {
		if err := b.metrics.register(opts.Metrics, b.server); err != nil {
			b.stop()
			return fail(err)
		}
	}
	go b.server.RunSys(ctx, 10*time.Second)
	b.auth.follow(ctx, opts.Bus, opts.Policies)
	for name, nl := range b.listeners {
		go nl.serve(b.server.ServeConn)
		log.Info("mqtt listening", "listener", name, "kind", nl.cfg.Kind, "address", nl.Address(), "tls", nl.cfg.TLS != nil, "anonymous", nl.cfg.Anonymous)
	}
	return b, nil
}

// Cluster carries messages between this node's broker and the other
// nodes' (mqttnats.Router).
type Cluster interface {
	mqtt.Remote
	// Sessions is the store of the cluster's persistent sessions, for the
	// server that Start then joins: inflight bounds a session's queue,
	// expiry how long a message waits in it.
	Sessions(inflight int, expiry time.Duration) (mqtt.SharedStore, error)
	Start(s *mqtt.Server) error
	// Ready says why this node cannot take connections now, if it cannot.
	Ready() error
	Close()
}

// remote is c as the core's Remote: nil, not a nil interface value, for a
// single node.
func remote(c Cluster) mqtt.Remote {
	if c == nil {
		return nil
	}
	return c
}

func (b *Broker) closeListeners() {
	for _, nl := range b.listeners {
		nl.ln.Close()
	}
}

// Addr is the bound address of the named listener ("" when there is none).
func (b *Broker) Addr(name string) string {
	if nl, ok := b.listeners[name]; ok {
		return nl.Address()
	}
	return ""
}

// Ready says why the broker cannot take connections now (its node is cut
// off from the cluster), if it cannot.
func (b *Broker) Ready() error {
	if b.cluster == nil {
		return nil
	}
	return b.cluster.Ready()
}

// StopAccepting closes every listener: new connections are refused, and
// the connected stay until Close. Idempotent.
func (b *Broker) StopAccepting() {
	for _, nl := range b.listeners {
		nl.shutdown()
	}
}

// Close disconnects every client (MQTT 5: server shutting down), stops the
// listeners and closes the persistence file.
func (b *Broker) Close() error {
	b.stopOnce.Do(func() {
		b.StopAccepting()
		b.server.Close()
		if b.cluster != nil { // after the server: its last wills go out
			b.cluster.Close()
		}
		// Connections still in their TLS handshake are not the core's yet.
		for _, nl := range b.listeners {
			nl.drain()
		}
		b.stop()
		b.auth.stopFollowing()
		b.audit.wait()
		b.workers.stop()
		if err := b.store.Close(); err != nil {
			b.log.Error("mqtt: closing the session store failed", "err", err)
		}
	})
	return nil
}
