package certauth

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"
)

// crlCache keeps the last CRL signed. gen counts revocations seen; a CRL
// signed at an older gen is stale, which a revocation landing while a CRL is
// being signed cannot go unnoticed by.
type crlCache struct {
	gen atomic.Uint64

	mu                     sync.Mutex // held while signing; guards the rest
	der                    []byte
	derGen                 uint64
	thisUpdate, nextUpdate time.Time
	number                 *big.Int
}

func (c *crlCache) invalidate() { c.gen.Add(1) }

// CRL returns the current CRL of the device issuing CA (DER) and when it
// will be replaced at the latest. It is signed anew after a revocation and
// when half of its lifetime has passed.
func (c *Checker) CRL(ctx context.Context) (der []byte, nextUpdate time.Time, err error) {
	k := &c.crl
	k.mu.Lock()
	defer k.mu.Unlock()
	now := c.opts.Now()
	gen := k.gen.Load()
	if k.der != nil && k.derGen == gen && now.Before(k.thisUpdate.Add(c.opts.CRLLifetime/2)) {
		return k.der, k.nextUpdate, nil
	}
	entries, err := c.crlEntries(ctx, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	// RFC 5280 §5.2.3: the number increases with every CRL. Time in
	// nanoseconds does across restarts and, clocks agreeing, across nodes;
	// the +1 keeps it increasing on this node whatever the clock does.
	number := big.NewInt(now.UnixNano())
	if k.number != nil && number.Cmp(k.number) <= 0 {
		number.Add(k.number, big.NewInt(1))
	}
	this := now.UTC().Truncate(time.Second)
	next := this.Add(c.opts.CRLLifetime)
	der, err = c.opts.DeviceCA.CreateCRL(entries, number, this, next)
	if err != nil {
		return nil, time.Time{}, err
	}
	k.der, k.derGen, k.thisUpdate, k.nextUpdate, k.number = der, gen, this, next, number
	return der, next, nil
}

// crlEntries lists the revoked certificates of the device issuing CA whose
// serial number is known and that have not expired (RFC 5280 §3.3: an expired
// certificate may leave the CRL).
func (c *Checker) crlEntries(ctx context.Context, now time.Time) ([]x509.RevocationListEntry, error) {
	var out []x509.RevocationListEntry
	for after := int64(0); ; {
		page, err := c.opts.Store.ListRevokedCerts(ctx, after, revocationPage)
		if err != nil {
			return nil, fmt.Errorf("CRL: read revocations: %w", err)
		}
		for _, r := range page {
			after = r.Seq
			if r.Authority != AuthorityPlatform || r.SerialNumber == "" || (!r.NotAfter.IsZero() && r.NotAfter.Before(now)) {
				continue
			}
			serial, ok := new(big.Int).SetString(r.SerialNumber, 16)
			if !ok {
				c.opts.Log.Warn("certauth: revoked certificate with an unreadable serial number left out of the CRL", "fingerprint", r.FingerprintSHA256, "serial", r.SerialNumber)
				continue
			}
			out = append(out, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
		}
		if len(page) < revocationPage {
			return out, nil
		}
	}
}
