// Package directory is thingid's LDAPv3 server (RFC 4511): the users, things
// and groups of the store, as people, devices and groups under one base DN,
// for clients that speak only LDAP. It owns the protocol (its own framing
// and message decoding on asn1-ber), the tree, the schema it publishes and
// the LDAP binds; it never stores anything of its own and must not change
// an identity except through identity.
//
// Why not gldap: gldap runs its own listener and accept loop (thingid's
// listeners accept through netlimit), reads messages with asn1-ber's
// process-wide size and depth settings, and hands filters over as strings
// to be parsed again; bounding a message before it is decoded, answering
// unknown critical controls, binding paging cookies to a connection and
// compiling filters to SQL all need the layer below it. So the framing,
// the LDAPMessage decoding and the session are here, on asn1-ber's packets.
package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits bound what one client may cost.
type Limits struct {
	// MaxMessageBytes is the largest LDAPMessage a client may send; a
	// larger one ends its session.
	MaxMessageBytes int
	// IdleTimeout closes a session that sends nothing for that long.
	IdleTimeout time.Duration
	// ReadTimeout is the time a client has to send the rest of a message
	// once its first byte came, and the server to write an answer.
	ReadTimeout time.Duration
	// SizeLimit is the most entries one search returns, whatever the
	// client asks; TimeLimit the longest it runs.
	SizeLimit int
	TimeLimit time.Duration
}

// Options configure a Server.
type Options struct {
	// BaseDN is the naming context: people, devices and groups are below it.
	BaseDN string
	// TLS is the server's TLS configuration (the platform's certificate),
	// for LDAPS and StartTLS.
	TLS    *tls.Config
	Limits Limits
	// Store is where entries are read.
	Store Store
	// Passwords checks simple binds' passwords under sign-in's rules.
	Passwords Passwords
	// Writer changes identities through identity: Add, Modify, Modify
	// DN, Delete and Password Modify.
	Writer Writer
	// ServiceAccounts are the OAuth clients that bind as
	// cn=<client_id>,ou=services,<base>, each with the ous (people,
	// devices, groups) it reads; ClientSecrets checks their secrets (nil
	// when there are none).
	ServiceAccounts map[string][]string
	ClientSecrets   ClientSecrets
	// VerifyCertificate returns the id of the active thing a client
	// certificate chain identifies (certauth), for SASL EXTERNAL.
	VerifyCertificate func(ctx context.Context, chain []*x509.Certificate) (thingID string, err error)
	// IsAdministrator says whether a user may read the whole directory.
	IsAdministrator func(ctx context.Context, userID string) (bool, error)
	// Log receives an access log line per operation and one per session
	// ended for a protocol error; nil: slog.Default().
	Log *slog.Logger
	// Registerer registers the directory's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Server serves LDAP sessions on the listeners given to Serve.
type Server struct {
	opts    Options
	base    DN
	log     *slog.Logger
	metrics *metrics
	// people, devices and groups are the stored kinds, built once.
	people, devices, groups *storedKind
	// ctx ends when the server closes: the operations of every session.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// New checks o and returns a Server.
func New(o Options) (*Server, error) {
	base, err := ParseDN(o.BaseDN)
	switch {
	case err != nil:
		return nil, fmt.Errorf("directory: base DN: %w", err)
	case len(base) == 0:
		return nil, errors.New("directory: base DN: empty")
	case o.TLS == nil:
		return nil, errors.New("directory: TLS is required")
	case o.Store == nil || o.Passwords == nil || o.Writer == nil || o.VerifyCertificate == nil || o.IsAdministrator == nil:
		return nil, errors.New("directory: Store, Passwords, Writer, VerifyCertificate and IsAdministrator are required")
	case len(o.ServiceAccounts) > 0 && o.ClientSecrets == nil:
		return nil, errors.New("directory: ServiceAccounts need ClientSecrets")
	case o.Limits.MaxMessageBytes < 1024 || o.Limits.IdleTimeout <= 0 || o.Limits.ReadTimeout <= 0 || o.Limits.SizeLimit <= 0 || o.Limits.TimeLimit <= 0:
		return nil, errors.New("directory: MaxMessageBytes must be at least 1024; IdleTimeout, ReadTimeout, SizeLimit and TimeLimit positive")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("directory: register metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: o, base: base, log: o.Log, metrics: m, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.people, s.devices, s.groups = s.kinds()
	return s, nil
}

// Serve accepts sessions on ln until it is closed or the server is. With
// ldaps, each connection starts with a TLS handshake; otherwise it is plain
// LDAP that may turn to TLS with StartTLS. ln should accept through
// netlimit, which bounds connections per address and in all.
func (s *Server) Serve(ln net.Listener, ldaps bool) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if s.isClosed() {
				return nil
			}
			return err
		}
		if !s.track(c) {
			c.Close()
			return nil
		}
		go func() {
			defer s.untrack(c)
			newSession(s, c, ldaps).serve()
		}()
	}
}

// Close ends every session and waits for them.
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}
