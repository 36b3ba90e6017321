package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/thingid/thingid/internal/secrets"
)

// Import names PEM files holding an existing CA to use instead of generating
// one: the platform root (CertFile, KeyFile) and optionally the device issuing
// CA under it (IssuingCertFile, IssuingKeyFile). They are read once, on first
// start, and then kept in the pki directory with the keys sealed like
// generated ones. The zero Import generates both.
type Import struct {
	CertFile, KeyFile               string
	IssuingCertFile, IssuingKeyFile string
}

// Open returns the platform CA and the device issuing CA kept in dir,
// importing or creating them on first use. It holds a lock on dir meanwhile, so
// that processes starting at once in one data directory end with one CA.
func Open(dir string, key secrets.Key, imp Import) (*CA, *DeviceCA, error) {
	if (imp.CertFile == "") != (imp.KeyFile == "") || (imp.IssuingCertFile == "") != (imp.IssuingKeyFile == "") {
		return nil, nil, errors.New("CA import: give a certificate file and a key file together")
	}
	if imp.IssuingCertFile != "" && imp.CertFile == "" {
		return nil, nil, errors.New("CA import: an issuing CA needs its root (the CA certificate and key files) too")
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	if imp.CertFile != "" {
		if _, err := os.Stat(filepath.Join(dir, CACertFile)); errors.Is(err, os.ErrNotExist) {
			if err := imp.install(dir, key); err != nil {
				return nil, nil, err
			}
		}
	}
	root, err := loadOrCreateRoot(dir, key, imp)
	if err != nil {
		return nil, nil, err
	}
	dca, err := root.deviceCA(dir, key, imp)
	if err != nil {
		return nil, nil, err
	}
	return root, dca, nil
}

// sameRoot refuses to run with a configured root other than the one in dir:
// silently keeping the old one would leave the operator believing devices
// chain to the new one.
func (imp Import) sameRoot(have *x509.Certificate, dir string) error {
	return sameCert(imp.CertFile, have, filepath.Join(dir, CACertFile))
}

func (imp Import) sameIssuing(have *x509.Certificate, dir string) error {
	return sameCert(imp.IssuingCertFile, have, filepath.Join(dir, deviceCACertFile))
}

func sameCert(file string, have *x509.Certificate, kept string) error {
	if file == "" {
		return nil
	}
	want, err := readCertFile(file)
	if err != nil {
		return err
	}
	if !want.Equal(have) {
		return fmt.Errorf("%s holds %q, but the platform already runs with %q (%s); certificates it issued chain to that one. To switch, move the pki directory away (every issued device certificate then stops verifying)",
			file, want.Subject, have.Subject, kept)
	}
	return nil
}

// install checks the configured CAs, all of them before anything is kept,
// and keeps them in dir: the issuing CA first and the root last, so that a
// root in dir means a complete import.
func (imp Import) install(dir string, key secrets.Key) error {
	root, rootKey, err := readPair(imp.CertFile, imp.KeyFile)
	if err != nil {
		return err
	}
	if err := checkCA(root, imp.CertFile, x509.KeyUsageCertSign); err != nil {
		return err
	}
	if root.MaxPathLenZero {
		return fmt.Errorf("%s: %q has path length 0: it cannot have the device issuing CA under it", imp.CertFile, root.Subject)
	}
	if imp.IssuingCertFile != "" {
		issuing, issuingKey, err := readPair(imp.IssuingCertFile, imp.IssuingKeyFile)
		if err != nil {
			return err
		}
		// It signs device certificates and the CRL.
		if err := checkCA(issuing, imp.IssuingCertFile, x509.KeyUsageCertSign|x509.KeyUsageCRLSign); err != nil {
			return err
		}
		if err := issuing.CheckSignatureFrom(root); err != nil {
			return fmt.Errorf("%s: not issued by the CA in %s: %w", imp.IssuingCertFile, imp.CertFile, err)
		}
		if err := savePair(dir, deviceCACertFile, deviceCAKeyFile, [][]byte{issuing.Raw}, issuingKey, key); err != nil {
			return err
		}
	}
	return savePair(dir, CACertFile, caKeyFile, [][]byte{root.Raw}, rootKey, key)
}

// readPair reads a certificate and its private key and checks they belong
// together.
func readPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCertFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	signer, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of the certificate in %s", keyFile, certFile)
	}
	return cert, signer, nil
}

func readCertFile(name string) (*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cert, nil
}

// checkCA accepts a CA certificate that is valid now, may sign with usage and
// has a key the platform accepts.
func checkCA(c *x509.Certificate, name string, usage x509.KeyUsage) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%s: %q is not a CA certificate (basicConstraints cA is not set)", name, c.Subject)
	}
	if c.KeyUsage&usage != usage {
		return fmt.Errorf("%s: %q lacks the key usage to sign certificates and CRLs (keyCertSign, cRLSign)", name, c.Subject)
	}
	if now := time.Now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("%s: %q is valid only from %s to %s", name, c.Subject, c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
	}
	if err := CheckPublicKey(c.PublicKey); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ParseCertificatePEM reads exactly one PEM "CERTIFICATE" block (surrounding
// text, as openssl writes it, is ignored).
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block: want one -----BEGIN CERTIFICATE-----")
	}
	if b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", b.Type)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block: give one certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	return c, nil
}

// ParseLeafPEM reads the first certificate of a PEM bundle: the device's own
// in a bundle of a device certificate and its CAs.
func ParseLeafPEM(data []byte) (*x509.Certificate, error) {
	_, rest := pem.Decode(data)
	return ParseCertificatePEM(data[:len(data)-len(rest)])
}

// ParsePrivateKeyPEM reads a private key in PEM: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"). Encrypted keys are
// refused with a hint: decrypt them first.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	var b *pem.Block
	for rest := data; ; {
		if b, rest = pem.Decode(rest); b == nil || b.Type != "EC PARAMETERS" {
			break // openssl ecparam -genkey writes the curve's parameters first
		}
	}
	if b == nil {
		return nil, errors.New("no PEM block: want -----BEGIN PRIVATE KEY-----")
	}
	const encrypted = "the key is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN); it is sealed with the master key once imported"
	if _, ok := b.Headers["Proc-Type"]; ok || b.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New(encrypted)
	}
	var (
		k   any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	switch k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("private key of type %T cannot sign", k)
}
