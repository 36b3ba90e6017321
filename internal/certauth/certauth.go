// Package certauth decides whether a client certificate presented on a TLS
// connection identifies an active thing: it must chain to the platform's device
// CA or a registered manufacturer CA, be within its validity, not be revoked,
// and map to an active thing whose serial number matches. It also keeps the
// manufacturer CAs, the revocations and the CRL. It changes things only
// through internal/identity and never issues certificates (internal/pki does).
package certauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
)

// EventCertRevoke is published when a certificate is revoked: Kind "thing",
// ID the thing, Details["fingerprint"] the lower-case hex SHA-256 of the DER.
const EventCertRevoke = "cert.revoke"

// Events of manufacturer CAs: Kind "manufacturer-ca", ID the CA. Every node
// reloads its trust anchors when it sees one.
const (
	EventCACreate = "manufacturer-ca.create"
	EventCADelete = "manufacturer-ca.delete"
)

// AuthorityPlatform is Identity.Authority for certificates of the platform's
// device issuing CA.
const AuthorityPlatform = "platform"

// Refusals of Verify; test with errors.Is.
var (
	ErrNoCertificate  = errors.New("no client certificate presented")
	ErrUnknownCA      = errors.New("certificate does not chain to the platform CA or a registered manufacturer CA")
	ErrNotClientCert  = errors.New("certificate is not for TLS client authentication")
	ErrExpired        = errors.New("certificate has expired")
	ErrNotYetValid    = errors.New("certificate is not yet valid")
	ErrRevoked        = errors.New("certificate is revoked")
	ErrNoThing        = errors.New("certificate names no known thing")
	ErrThingDisabled  = errors.New("thing is disabled")
	ErrSerialMismatch = errors.New("certificate serial number does not match the thing")
	// ErrWrongAuthority: a manufacturer certificate names (by manufacturer,
	// model and serial) a thing that its issuer did not provision.
	ErrWrongAuthority = errors.New("thing was not provisioned by this certificate's issuer")
)

// refusals are the errors by which Verify refuses a certificate.
var refusals = []error{ErrNoCertificate, ErrUnknownCA, ErrNotClientCert, ErrExpired, ErrNotYetValid, ErrRevoked,
	ErrNoThing, ErrThingDisabled, ErrSerialMismatch, ErrWrongAuthority}

// Refused tells a refusal of Verify (the client's certificate is not
// acceptable: answer 401 or its protocol's equivalent) from a failure of the
// server (answer 500 or 503 and log it).
func Refused(err error) bool {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

const (
	defaultReloadInterval = 30 * time.Second
	defaultCRLLifetime    = 24 * time.Hour
)

// Options configures a Checker. Store, Identity and DeviceCA are required.
type Options struct {
	Store    store.Store
	Identity *identity.Service // creates things provisioned just in time
	DeviceCA *pki.DeviceCA     // the platform's issuing CA (and its root)
	Bus      *events.Bus
	Log      *slog.Logger
	Now      func() time.Time // time.Now when nil
	// ReloadInterval is how often manufacturer CAs and revocations are re-read
	// from the store, for the events a node missed (default 30 s).
	ReloadInterval time.Duration
	// CRLLifetime is the span from a CRL's thisUpdate to its nextUpdate
	// (default 24 h); a CRL is signed anew after half of it, or at once after a
	// revocation.
	CRLLifetime time.Duration
	// Registerer registers thingid_certificates_total, which counts
	// revocations here (CertificateEvents); nil: not registered.
	Registerer prometheus.Registerer
}

// Checker verifies client certificates. It is safe for concurrent use.
type Checker struct {
	opts    Options
	anchors atomic.Pointer[anchors]
	revoked revokedSet
	things  fpCache[string] // manufacturer certificate → the thing it was provisioned as
	crl     crlCache

	caMu    sync.Mutex      // serializes swaps of anchors
	deleted map[string]bool // manufacturer CAs deleted; guarded by caMu
	revMu   sync.Mutex      // serializes reads of new revocations
	lastSeq int64           // guarded by revMu
	// revocationsRead: the first read is done (guarded by revMu).
	revocationsRead bool

	certificates *prometheus.CounterVec // thingid_certificates_total

	wake        chan struct{}
	stop        context.CancelFunc
	done        chan struct{}
	unsubscribe func()
}

// Identity is a verified client certificate.
type Identity struct {
	Thing      *store.Thing
	Leaf       *x509.Certificate
	Thumbprint string // x5t#S256 of the leaf (tokens.CertThumbprint)
	// Authority is "platform" or the id of the manufacturer CA it chains to.
	Authority string
}

// New returns a Checker; Close it when done.
func New(ctx context.Context, opts Options) (*Checker, error) {
	if opts.Store == nil || opts.Identity == nil || opts.DeviceCA == nil {
		return nil, errors.New("certauth: Store, Identity and DeviceCA are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReloadInterval == 0 {
		opts.ReloadInterval = defaultReloadInterval
	}
	if opts.CRLLifetime == 0 {
		opts.CRLLifetime = defaultCRLLifetime
	}
	if opts.ReloadInterval < 0 || opts.CRLLifetime < time.Minute {
		return nil, errors.New("certauth: ReloadInterval must be positive and CRLLifetime at least a minute")
	}
	certificates, err := CertificateEvents(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("certauth: register metrics: %w", err)
	}
	c := &Checker{opts: opts, certificates: certificates, deleted: map[string]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{}), unsubscribe: func() {}}
	c.anchors.Store(newAnchors(opts.DeviceCA, nil))
	// Subscribe before loading, so that nothing published meanwhile is missed.
	if opts.Bus != nil {
		c.unsubscribe = opts.Bus.Subscribe(c.onEvent)
	}
	if err := c.reload(ctx); err != nil {
		c.unsubscribe()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go c.run(runCtx)
	return c, nil
}

// Close stops following revocations.
func (c *Checker) Close() {
	c.unsubscribe()
	c.stop()
	<-c.done
}

// onEvent applies what other nodes (and this one) publish. It runs on the
// publisher's goroutine: it only touches memory and wakes the reloader.
func (c *Checker) onEvent(e events.Event) {
	switch e.Type {
	case EventCertRevoke:
		if fp, ok := parseFingerprint(e.Details["fingerprint"]); ok {
			c.revoked.add(fp)
			c.crl.invalidate()
		}
	case EventCADelete:
		c.removeCA(e.ID)
	case EventCACreate, events.Resync:
		c.poke() // read the CAs and the revocations since the last read
	}
}

func (c *Checker) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Checker) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.opts.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
		if err := c.reload(ctx); err != nil && ctx.Err() == nil {
			c.opts.Log.Warn("certauth: reload of manufacturer CAs and revocations failed; keeping the last ones", "err", err)
		}
	}
}

// reload re-reads the manufacturer CAs and the revocations made since the last read.
func (c *Checker) reload(ctx context.Context) error {
	if err := c.reloadCAs(ctx); err != nil {
		return err
	}
	return c.loadRevocations(ctx)
}

// Verify checks chain, leaf first as in tls.ConnectionState.PeerCertificates.
// A refusal wraps one of the Err values; other errors are the server's.
//
// Verify says which thing the certificate belongs to; it does not know which
// thing the caller claims to be: a caller that also has a client_id (or any
// other claimed identity) must compare it with Identity.Thing.
func (c *Checker) Verify(ctx context.Context, chain []*x509.Certificate) (*Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, ErrNoCertificate
	}
	leaf, now := chain[0], c.opts.Now()
	fp := sha256.Sum256(leaf.Raw)
	v, err := c.anchors.Load().verify(leaf, chain[1:], fp, now)
	if err != nil {
		return nil, err
	}
	if c.revoked.has(fp) {
		return nil, fmt.Errorf("%w: SHA-256 %x (serial %x, subject %q)", ErrRevoked, fp, leaf.SerialNumber, leaf.Subject)
	}
	var t *store.Thing
	if v.ca == nil {
		t, err = c.platformThing(ctx, leaf)
	} else {
		t, err = c.manufacturerThing(ctx, v.ca, leaf, fp)
	}
	if err != nil {
		return nil, err
	}
	if t.Status != store.StatusActive {
		return nil, fmt.Errorf("%w: thing %s (serial %q) is %s", ErrThingDisabled, t.ID, t.SerialNumber, t.Status)
	}
	return &Identity{Thing: t, Leaf: leaf, Thumbprint: base64.RawURLEncoding.EncodeToString(fp[:]), Authority: v.authority()}, nil
}

// Revoked tells whether the certificate with thumbprint x5t (base64url
// SHA-256 of its DER, as Identity.Thumbprint) is revoked, for callers that
// keep a verified identity beyond the connection (a thing's session).
func (c *Checker) Revoked(x5t string) bool {
	b, err := base64.RawURLEncoding.DecodeString(x5t)
	if err != nil || len(b) != sha256.Size {
		return true
	}
	return c.revoked.has([32]byte(b))
}

// platformThing is the thing a device certificate of the platform names.
func (c *Checker) platformThing(ctx context.Context, leaf *x509.Certificate) (*store.Thing, error) {
	id, ok := pki.ThingID(leaf)
	if !ok {
		return nil, fmt.Errorf("%w: the device issuing CA's certificate %q carries no %s URI", ErrNoThing, leaf.Subject, pki.ThingURIPrefix)
	}
	t, err := c.opts.Store.GetThing(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: thing %s named by the certificate does not exist (deleted?)", ErrNoThing, id)
	}
	if err != nil {
		return nil, err
	}
	if t.SerialNumber == "" || leaf.Subject.SerialNumber != t.SerialNumber {
		return nil, fmt.Errorf("%w: certificate subject serialNumber %q, thing %s has %q", ErrSerialMismatch, leaf.Subject.SerialNumber, id, t.SerialNumber)
	}
	return t, nil
}
