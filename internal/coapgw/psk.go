package coapgw

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"

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
func (g *Gateway) pskKey(identity []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.HandshakeTimeout)
	defer cancel()
	_, key, err := g.opts.PSKs.Key(ctx, identity)
	if err == nil {
		return key, nil
	}
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

// pskSession records the session of a completed PSK handshake. It is
// registered before its key is looked up again, so that an event from now
// on (the thing disabled, its key re-issued) finds it, and one that came
// before shows in what the store answers.
func (g *Gateway) pskSession(cc *udpClient.Conn, identity []byte) {
	id, err := psk.ParseIdentity(identity)
	if err != nil {
		g.pskRefused(identity, err)
		cc.Close()
		return
	}
	s := &Session{PSKIdentity: id.String(), thingID: id.ThingID, pskKeyID: id.KeyID, conn: cc}
	g.register(s)
	th, _, err := g.opts.PSKs.Key(cc.Context(), identity)
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
