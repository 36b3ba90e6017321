package sdk

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ThingURIPrefix starts the URI subject alternative name by which a thingid
// certificate names its thing: urn:thingid:thing:<thing id>.
const ThingURIPrefix = "urn:thingid:thing:"

// ThingID returns the thing a certificate names, "" when it names none.
func ThingID(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if id, ok := strings.CutPrefix(u.String(), ThingURIPrefix); ok && id != "" {
			return id
		}
	}
	return ""
}

// loadPair reads a PEM certificate chain (device certificate first) and a PEM
// private key (PKCS#8, SEC 1 or PKCS#1) and checks that they belong together.
func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sdk: reading the device certificate: %w (Config.CertFile should be the device.pem of the factory batch)", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sdk: reading the device key: %w (Config.KeyFile should be the device.key of the factory batch)", err)
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return tls.Certificate{}, fmt.Errorf("sdk: %s holds no PEM CERTIFICATE block", certFile)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sdk: the first certificate in %s: %w", certFile, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sdk: %s: %w", keyFile, err)
	}
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("sdk: the key in %s does not belong to the certificate in %s: use the two files of the same device", keyFile, certFile)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY; encrypted keys are not supported)", b.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign", k)
	}
	return s, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return a.(equaler).Equal(b)
	}
	return false
}

// A renewal stages the new key and certificate next to the files it
// replaces, then renames them into place: key first, then certificate. A
// crash at any point leaves a consistent pair once finishRenewal has run,
// which New does before loading.
func pendingKey(keyFile string) string   { return keyFile + ".next" }
func pendingCert(certFile string) string { return certFile + ".next" }

// finishRenewal completes or discards a renewal interrupted by a crash: a
// staged certificate means the platform issued it, so it and its key go into
// place; a staged key alone means the certificate never arrived, and the
// current pair stands.
func finishRenewal(certFile, keyFile string) error {
	kn, cn := pendingKey(keyFile), pendingCert(certFile)
	if _, err := os.Stat(cn); errors.Is(err, fs.ErrNotExist) {
		if err := os.Remove(kn); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sdk: removing the key of an unfinished renewal: %w", err)
		}
		return nil
	}
	key := kn
	if _, err := os.Stat(kn); errors.Is(err, fs.ErrNotExist) {
		key = keyFile // renamed into place already
	}
	if _, err := loadPair(cn, key); err != nil {
		// Not a pair: a renewal cannot have left this; keep the current files.
		os.Remove(cn)
		os.Remove(kn)
		return nil
	}
	return commitRenewal(certFile, keyFile)
}

// commitRenewal moves the staged key (when still staged) and certificate into place.
func commitRenewal(certFile, keyFile string) error {
	if err := os.Rename(pendingKey(keyFile), keyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sdk: installing the renewed key: %w", err)
	}
	if err := os.Rename(pendingCert(certFile), certFile); err != nil {
		return fmt.Errorf("sdk: installing the renewed certificate: %w", err)
	}
	return errors.Join(syncDir(filepath.Dir(keyFile)), syncDir(filepath.Dir(certFile)))
}

// writeFileSynced writes data to path durably: a temporary file in the same
// directory, synced, then renamed over path.
func writeFileSynced(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
