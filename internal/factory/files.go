package factory

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
)

type x509CSR = x509.CertificateRequest

func firstCert(b []byte) (*x509.Certificate, string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, "", errors.New("no certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(blk.Bytes)
	return c, hex.EncodeToString(sum[:]), nil
}
