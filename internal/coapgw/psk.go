package coapgw

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/store"
)

// PSKs finds the thing a PSK identity names and its key in clear:
// psk.Keys. A refusal (malformed identity, no such thing or key, a key
// replaced, a thing not active) wraps psk.ErrRefused.
type PSKs interface {
	Key(ctx context.Context, identity []byte) (*store.Thing, []byte, error)
}

// certificateSuites are pion's default suites, the ones the gateway offers
// to things with certificates.
var certificateSuites = []piondtls.CipherSuiteID{
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	piondtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	piondtls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	piondtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	piondtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// pskSuites are offered when Options.PSKs is set: RFC 7252 §9.1.3.1's
// mandatory TLS_PSK_WITH_AES_128_CCM_8, and AES-128 in CCM and GCM.
var pskSuites = []piondtls.CipherSuiteID{
	piondtls.TLS_PSK_WITH_AES_128_CCM_8,
	piondtls.TLS_PSK_WITH_AES_128_CCM,
	piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
}

// cipherSuites are the suites the DTLS listener offers.
func (g *Gateway) cipherSuites() []piondtls.CipherSuiteID {
	if g.opts.PSKs == nil {
		return certificateSuites
	}
	return slices.Concat(pskSuites, certificateSuites)
}

// isPSK is whether a handshake negotiated a PSK suite: the PSK callback,
// not certauth, decided who the client is.
func isPSK(st *piondtls.State) bool { return slices.Contains(pskSuites, st.CipherSuiteID) }

// pskKey is pion's PSK callback: the key of the identity a client sent.
// The gateway compares no secret: a wrong key shows in the client's
// Finished, which pion checks in constant time (and a record it cannot
// decrypt it drops). An identity refused gets a random key rather than an
// alert, so its handshake fails exactly as a wrong key's does: a client
// learns nothing of which identities exist or which things are disabled.
//
// What it found (the thing, never the key) is kept for the session the
// handshake makes (pskSession), with the count of its thing's changes
// taken before the store was read.
func (g *Gateway) pskKey(identity []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.HandshakeTimeout)
	defer cancel()
	var seen uint64
	if id, err := psk.ParseIdentity(identity); err == nil {
		seen = g.pskFound.changes(id.ThingID)
	}
	th, key, err := g.opts.PSKs.Key(ctx, identity)
	if err == nil {
		if g.opts.Bus != nil { // without events, no change would show
			g.pskFound.put(string(identity), pskLookup{thing: th, seen: seen, at: g.opts.Now()})
		}
		return key, nil
	}
	g.pskFound.forget(string(identity))
	g.pskRefused(identity, err)
	if !errors.Is(err, psk.ErrRefused) {
		return nil, err
	}
	decoy := make([]byte, 32)
	if _, err := rand.Read(decoy); err != nil {
		return nil, err
	}
	return decoy, nil
}

func (g *Gateway) pskRefused(identity []byte, err error) {
	if len(identity) > psk.MaxIdentity {
		identity = identity[:psk.MaxIdentity]
	}
	if errors.Is(err, psk.ErrRefused) {
		g.metrics.handshakes.WithLabelValues("refused").Inc()
		g.opts.Log.Info("coapgw: PSK identity refused", "identity", string(identity), "err", err)
		return
	}
	g.metrics.handshakes.WithLabelValues("error").Inc()
	g.opts.Log.Error("coapgw: PSK check failed", "identity", string(identity), "err", err)
}

// errChangedInHandshake refuses a PSK session whose thing had an event
// that ends sessions (disabled, deleted, unlinked, its key re-issued)
// after its key was looked up, before the session was recorded: no
// session existed for the event to end. The thing handshakes again.
var errChangedInHandshake = errors.New("the thing changed during the handshake")

// pskSession records the session of a completed PSK handshake. It is
// registered first, so that an event from now on (the thing disabled, its
// key re-issued) finds it; an event that came after the PSK callback read
// the store, and before that, shows in the thing's count of changes, and
// the session is closed. Without a lookup to go by (none kept: no event
// bus, too many handshakes at once), the store is read again.
func (g *Gateway) pskSession(cc *udpClient.Conn, identity []byte) {
	id, err := psk.ParseIdentity(identity)
	if err != nil {
		g.pskRefused(identity, err)
		cc.Close()
		return
	}
	s := &Session{PSKIdentity: id.String(), thingID: id.ThingID, pskKeyID: id.KeyID, conn: cc}
	g.register(s)
	th, err := g.pskThing(cc.Context(), id, identity)
	if err != nil {
		g.pskRefused(identity, err)
		cc.Close()
		return
	}
	g.mu.Lock()
	s.Thing, s.self = th, selfOf(th)
	g.mu.Unlock()
	g.metrics.handshakes.WithLabelValues("ok").Inc()
	g.opts.Log.Info("coapgw: session", "thing", th.ID, "psk", s.PSKIdentity, "remote", cc.RemoteAddr().String())
}

// pskThing is the thing of a completed PSK handshake: what its callback
// found, unless the thing changed since; the store's answer when nothing
// was kept.
func (g *Gateway) pskThing(ctx context.Context, id psk.Identity, identity []byte) (*store.Thing, error) {
	found, ok := g.pskFound.get(string(identity), g.opts.Now().Add(-g.opts.HandshakeTimeout))
	if !ok {
		th, _, err := g.opts.PSKs.Key(ctx, identity)
		return th, err
	}
	if found.seen != g.pskFound.changes(id.ThingID) {
		return nil, fmt.Errorf("%w: %s: %w", psk.ErrRefused, id.ThingID, errChangedInHandshake)
	}
	return found.thing, nil
}

// pskLookups are the PSK callback's findings, by identity, for the
// sessions their handshakes make, and the count of each thing's changes
// that end sessions (onEvent). Counts are kept in buckets by thing id: a
// count bumped for another thing of the bucket closes a session that did
// not need closing, never keeps one that did.
type pskLookups struct {
	mu    sync.Mutex
	found map[string]pskLookup

	counts [changeBuckets]atomic.Uint64
}

// pskLookup is what the PSK callback found for an identity.
type pskLookup struct {
	thing *store.Thing
	seen  uint64    // the thing's count of changes before the store was read
	at    time.Time // when
}

const (
	// changeBuckets hold the things' counts of changes.
	changeBuckets = 1024
	// maxPSKLookups bounds the findings kept; past it they start afresh
	// (the sessions of the handshakes in flight read the store again).
	maxPSKLookups = 4096
)

func (l *pskLookups) put(identity string, f pskLookup) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.found == nil || len(l.found) >= maxPSKLookups {
		l.found = map[string]pskLookup{}
	}
	l.found[identity] = f
}

func (l *pskLookups) forget(identity string) {
	l.mu.Lock()
	delete(l.found, identity)
	l.mu.Unlock()
}

// get is the finding of identity made after notBefore. Another handshake
// with the same identity may have made it: a lookup of the same identity
// that found its key current, with no change of the thing since, is as
// good as this handshake's own.
func (l *pskLookups) get(identity string, notBefore time.Time) (pskLookup, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.found[identity]
	return f, ok && !f.at.Before(notBefore)
}

func (l *pskLookups) bucket(thingID string) *atomic.Uint64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(thingID))
	return &l.counts[h.Sum32()%changeBuckets]
}

// changes is the thing's count of changes.
func (l *pskLookups) changes(thingID string) uint64 { return l.bucket(thingID).Load() }

// changed counts a change of the thing that ends its sessions; "" counts
// one for every thing (the events may have missed some).
func (l *pskLookups) changed(thingID string) {
	if thingID != "" {
		l.bucket(thingID).Add(1)
		return
	}
	for i := range l.counts {
		l.counts[i].Add(1)
	}
}
