package certauth

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
)

// anchors is one immutable set of trust anchors: the platform root with its
// device issuing CA, and the manufacturer CAs. It caches the chains it
// verified, so it is replaced (and the cache dropped) whenever a CA comes or goes.
type anchors struct {
	root, issuing *x509.Certificate
	roots         *x509.CertPool // the platform root and every manufacturer CA
	byFP          map[[32]byte]*manufacturerCA
	byID          map[string]*manufacturerCA
	verified      fpCache[*verified]
}

// manufacturerCA is a registered CA with its certificate parsed.
type manufacturerCA struct {
	*store.ManufacturerCA
	cert *x509.Certificate
}

// verified is the outcome of a chain verification that succeeded: the leaf
// chains to ca (nil: the platform) and the whole chain is valid between
// notBefore and notAfter.
type verified struct {
	ca                  *manufacturerCA
	notBefore, notAfter time.Time
}

func (v *verified) authority() string {
	if v.ca == nil {
		return AuthorityPlatform
	}
	return v.ca.ID
}

func newAnchors(dca *pki.DeviceCA, cas []*manufacturerCA) *anchors {
	a := &anchors{root: dca.Root, issuing: dca.Cert, roots: x509.NewCertPool(),
		byFP: map[[32]byte]*manufacturerCA{}, byID: map[string]*manufacturerCA{}}
	a.roots.AddCert(dca.Root)
	for _, ca := range cas {
		a.roots.AddCert(ca.cert)
		a.byFP[sha256.Sum256(ca.cert.Raw)] = ca
		a.byID[ca.ID] = ca
	}
	return a
}

// manufacturerCAs lists the CAs of a, without the one with id skip.
func (a *anchors) manufacturerCAs(skip string) []*manufacturerCA {
	out := make([]*manufacturerCA, 0, len(a.byID))
	for id, ca := range a.byID {
		if id != skip {
			out = append(out, ca)
		}
	}
	return out
}

// verify checks that leaf is a client certificate valid at now that chains,
// through the intermediates presented or the device issuing CA, to an anchor.
// fp is the SHA-256 of the leaf, the key of the cache of verified chains.
func (a *anchors) verify(leaf *x509.Certificate, presented []*x509.Certificate, fp [32]byte, now time.Time) (*verified, error) {
	if v, ok := a.verified.get(fp); ok && !now.Before(v.notBefore) && !now.After(v.notAfter) {
		return v, nil
	}
	// x509 lets any certificate be a leaf: a CA presented as one (the device
	// issuing CA, a manufacturer's intermediate) must not log in.
	if leaf.BasicConstraintsValid && leaf.IsCA {
		return nil, fmt.Errorf("%w: %q is a CA certificate", ErrNotClientCert, leaf.Subject)
	}
	// RFC 5280 §4.2.1.3: a TLS client signs with its key (digitalSignature).
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: %q lacks the digitalSignature key usage", ErrNotClientCert, leaf.Subject)
	}
	inter := x509.NewCertPool()
	inter.AddCert(a.issuing) // devices need not send it
	for _, c := range presented {
		if c != nil {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         a.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, verifyError(err, leaf, now)
	}
	v := a.anchorOf(chains)
	if v == nil {
		// The platform root also signs the listeners' server certificates
		// (refused above for their usage); only the device issuing CA's
		// certificates name things.
		return nil, fmt.Errorf("%w: %q chains to the platform root but not through the device issuing CA", ErrUnknownCA, leaf.Subject)
	}
	a.verified.put(fp, v)
	return v, nil
}

// anchorOf picks the chain to the platform through the device issuing CA,
// else one to a manufacturer CA, and returns its validity; nil when none.
func (a *anchors) anchorOf(chains [][]*x509.Certificate) *verified {
	var best []*x509.Certificate
	var v *verified
	for _, ch := range chains {
		top := ch[len(ch)-1]
		if top.Equal(a.root) {
			if len(ch) == 3 && ch[1].Equal(a.issuing) {
				best, v = ch, &verified{}
				break
			}
			continue
		}
		if ca := a.byFP[sha256.Sum256(top.Raw)]; ca != nil && v == nil {
			best, v = ch, &verified{ca: ca}
		}
	}
	if v == nil {
		return nil
	}
	v.notBefore, v.notAfter = best[0].NotBefore, best[0].NotAfter
	for _, c := range best[1:] {
		if c.NotBefore.After(v.notBefore) {
			v.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(v.notAfter) {
			v.notAfter = c.NotAfter
		}
	}
	return v
}

// verifyError maps an x509 verification error to a refusal that tells the
// operator what is wrong.
func verifyError(err error, leaf *x509.Certificate, now time.Time) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			switch {
			case now.After(leaf.NotAfter):
				return fmt.Errorf("%w: %q was valid until %s", ErrExpired, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
			case now.Before(leaf.NotBefore):
				return fmt.Errorf("%w: %q is valid from %s", ErrNotYetValid, leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339))
			}
			return fmt.Errorf("%w: a CA certificate in the chain of %q is outside its validity: %v", ErrExpired, leaf.Subject, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %q (or a CA above it) does not allow clientAuth in its extended key usage", ErrNotClientCert, leaf.Subject)
		}
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("%w: %q is issued by %q", ErrUnknownCA, leaf.Subject, leaf.Issuer)
	}
	// Issuer not a CA, path length exceeded, name constraints, unhandled
	// critical extensions: no acceptable chain.
	return fmt.Errorf("%w: %q: %v", ErrUnknownCA, leaf.Subject, err)
}

// fpCache maps certificate fingerprints to what was learnt about them. It is
// bounded: when full it starts over, which only costs a recomputation.
type fpCache[V any] struct {
	mu sync.RWMutex
	m  map[[32]byte]V
}

const maxCached = 1 << 16

func (c *fpCache[V]) get(fp [32]byte) (V, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[fp]
	return v, ok
}

func (c *fpCache[V]) put(fp [32]byte, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[[32]byte]V)
	}
	c.m[fp] = v
}

func (c *fpCache[V]) remove(fp [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, fp)
}
