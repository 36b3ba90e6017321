package pki

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// CreateCRL signs an RFC 5280 CRL (DER) of the certificates this CA issued
// that are revoked: numbered number (§5.2.3, increasing with every CRL the
// platform signs), issued at thisUpdate, to be replaced by nextUpdate (§5.1.2.5).
func (d *DeviceCA) CreateCRL(entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
	}, d.Cert, d.key)
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	return der, nil
}
