// Package pki owns thingid's certificate authority: the platform CA (generated
// or imported), the device issuing CA, device certificates, CRLs and the TLS
// server certificate of the listeners. Private keys are kept sealed with the
// master key. It issues certificates; it does not decide who may have one.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/thingid/thingid/internal/atomicfile"
	"github.com/thingid/thingid/internal/secrets"
)

// CA is the platform certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// CACertFile is the platform CA's certificate (PEM) in the PKI directory:
// what clients trust the platform's TLS certificates with.
const CACertFile = "ca.crt"

const (
	caKeyFile      = "ca.key.sealed"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key.sealed"
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
	// renewBefore: a server certificate this close to expiry is replaced at start.
	renewBefore = 30 * 24 * time.Hour
)

// LoadOrCreateCA reads the CA from dir or creates one there (ECDSA P-256).
func LoadOrCreateCA(dir string, key secrets.Key) (*CA, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return loadOrCreateRoot(dir, key, Import{})
}

// loadOrCreateRoot reads the CA from dir, checking it is the one imp names,
// or creates one; the caller holds the directory lock.
func loadOrCreateRoot(dir string, key secrets.Key, imp Import) (*CA, error) {
	cert, signer, err := loadPair(dir, CACertFile, caKeyFile, key)
	if err == nil {
		if err := imp.sameRoot(cert, dir); err != nil {
			return nil, err
		}
		return &CA{Cert: cert, key: signer}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("platform CA in %s: %w", dir, err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"thingid"}, CommonName: "thingid platform CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, err
	}
	if err := savePair(dir, CACertFile, caKeyFile, [][]byte{der}, priv, key); err != nil {
		return nil, err
	}
	cert, _ = x509.ParseCertificate(der)
	return &CA{Cert: cert, key: priv}, nil
}

// ServerCertificate returns the TLS certificate for hosts (DNS names or IPs), read
// from dir when it is still valid for a month and names every host, issued anew
// otherwise.
func (ca *CA) ServerCertificate(dir string, hosts []string, key secrets.Key) (tls.Certificate, error) {
	cert, signer, err := loadPair(dir, serverCertFile, serverKeyFile, key)
	if err == nil && time.Until(cert.NotAfter) > renewBefore && covers(cert, hosts) && cert.CheckSignatureFrom(ca.Cert) == nil {
		return tls.Certificate{Certificate: [][]byte{cert.Raw, ca.Cert.Raw}, PrivateKey: signer, Leaf: cert}, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("server certificate in %s: %w", dir, err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"thingid"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &priv.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := savePair(dir, serverCertFile, serverKeyFile, [][]byte{der, ca.Cert.Raw}, priv, key); err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: priv, Leaf: leaf}, nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// savePair writes the certificate chain as PEM (0644) and the PKCS#8 key sealed
// with the master key (0600), each through a temporary file and a rename.
func savePair(dir, certName, keyName string, chain [][]byte, priv crypto.Signer, key secrets.Key) error {
	var certPEM []byte
	for _, der := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	sealed, err := key.Seal(p8, keyName)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "THINGID SEALED PRIVATE KEY", Bytes: sealed})
	if err := atomicfile.Write(filepath.Join(dir, keyName), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, certName), certPEM, 0o644)
}

func loadPair(dir, certName, keyName string, key secrets.Key) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, certName))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyName))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" || kb == nil || kb.Type != "THINGID SEALED PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s or %s is not the expected PEM", certName, keyName)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certName, err)
	}
	p8, err := key.Open(kb.Bytes, keyName)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyName, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(p8)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyName, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyName)
	}
	return cert, signer, nil
}
