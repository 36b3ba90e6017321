package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/thingid/thingid/internal/secrets"
)

const (
	deviceCACertFile = "device-ca.crt"
	deviceCAKeyFile  = "device-ca.key.sealed"

	// DefaultDeviceLifetime is the validity of a factory certificate when the
	// caller gives none. Five years, not one: a unit may sit in a warehouse or on a
	// shelf for a long time before its first call home, and the factory
	// certificate is what it presents then; operational certificates are renewed
	// through EST and can be short.
	DefaultDeviceLifetime = 5 * 365 * 24 * time.Hour
	// MinRSABits is the smallest RSA modulus accepted in a CSR (NIST SP 800-131A).
	MinRSABits = 2048
	// maxSerialLen: the X.520 serialNumber attribute is a PrintableString of at
	// most 64 characters (RFC 5280 Appendix A.1, ub-serial-number).
	maxSerialLen = 64
)

// ThingURIPrefix starts the URI SAN that names the thing a device certificate
// was issued to: urn:thingid:thing:<thing id>.
const ThingURIPrefix = "urn:thingid:thing:"

// ErrUnsupportedKey is returned for a CSR whose public key is not ECDSA
// P-256/P-384, Ed25519 or RSA of at least MinRSABits bits.
var ErrUnsupportedKey = errors.New("unsupported public key")

// DeviceCA is the issuing intermediate for device certificates, signed by the
// platform root with path length 0: it issues end-entity certificates only.
// Set its fields before use; its methods are safe for concurrent use.
type DeviceCA struct {
	Cert *x509.Certificate
	Root *x509.Certificate
	// Lifetime is the validity of a device certificate whose caller asks for
	// none (lifetime 0); DefaultDeviceLifetime when zero.
	Lifetime time.Duration
	// CRLURL, when set, is written into every device certificate as its CRL
	// distribution point (RFC 5280 §4.2.1.13), so relying parties other than
	// thingid (a gateway, nginx) can check revocation.
	CRLURL string
	key    crypto.Signer
}

// DeviceCA reads the device issuing CA from dir or creates it there, signed by
// ca, its key sealed with key like the root's.
func (ca *CA) DeviceCA(dir string, key secrets.Key) (*DeviceCA, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return ca.deviceCA(dir, key, Import{})
}

// deviceCA reads the device issuing CA from dir, checking it is the one imp
// names, or creates it; the caller holds the directory lock.
func (ca *CA) deviceCA(dir string, key secrets.Key, imp Import) (*DeviceCA, error) {
	cert, signer, err := loadPair(dir, deviceCACertFile, deviceCAKeyFile, key)
	if err == nil {
		if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
			return nil, fmt.Errorf("device CA in %s is not signed by the platform CA: %w", dir, err)
		}
		if err := imp.sameIssuing(cert, dir); err != nil {
			return nil, err
		}
		return &DeviceCA{Cert: cert, Root: ca.Cert, key: signer}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("device CA in %s: %w", dir, err)
	}
	if ca.Cert.MaxPathLenZero {
		return nil, fmt.Errorf("platform CA %q has path length 0: it cannot have the device issuing CA under it", ca.Cert.Subject)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"thingid"}, CommonName: "thingid device issuing CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              ca.Cert.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &priv.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	if err := savePair(dir, deviceCACertFile, deviceCAKeyFile, [][]byte{der}, priv, key); err != nil {
		return nil, err
	}
	cert, _ = x509.ParseCertificate(der)
	return &DeviceCA{Cert: cert, Root: ca.Cert, key: priv}, nil
}

// DeviceCert is an issued device certificate.
type DeviceCert struct {
	Leaf *x509.Certificate
	// Chain is the DER of the device certificate then the issuing CA.
	Chain [][]byte
	// Key is the device's private key when IssueDevice generated it; nil for a
	// signed CSR, whose key never leaves the device.
	Key crypto.Signer
	// FingerprintSHA256 is the lower-case hex SHA-256 of the DER certificate.
	FingerprintSHA256 string
}

// ChainPEM returns the device certificate and the issuing CA as PEM.
func (c *DeviceCert) ChainPEM() []byte { return certsPEM(c.Chain...) }

// CertificatesPEM returns the root then the issuing CA as PEM: what a relying
// party needs to verify device certificates.
func (d *DeviceCA) CertificatesPEM() []byte { return certsPEM(d.Root.Raw, d.Cert.Raw) }

// certsPEM encodes DER certificates as PEM blocks.
func certsPEM(ders ...[]byte) []byte {
	var b []byte
	for _, der := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}

// KeyPEM returns the private key as PKCS#8 PEM, nil when there is none.
func (c *DeviceCert) KeyPEM() ([]byte, error) {
	if c.Key == nil {
		return nil, nil
	}
	p8, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), nil
}

// IssueDevice generates an ECDSA P-256 key for the thing and certifies it.
// lifetime 0 means d.Lifetime.
func (d *DeviceCA) IssueDevice(thingID, serial string, lifetime time.Duration) (*DeviceCert, error) {
	if err := d.checkRequest(thingID, serial, lifetime); err != nil {
		return nil, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c, err := d.issue(&priv.PublicKey, thingID, serial, lifetime)
	if err != nil {
		return nil, err
	}
	c.Key = priv
	return c, nil
}

// ParseCSR reads a PKCS#10 request in PEM ("CERTIFICATE REQUEST" or "NEW
// CERTIFICATE REQUEST") or DER.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("CSR: PEM block is %q, want CERTIFICATE REQUEST", b.Type)
		}
		data = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(data)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return csr, nil
}

// SignCSR certifies the public key of csr for the thing, after checking the
// CSR's self-signature (proof that the requester holds the key) and its key
// type. Only the key is taken from the CSR: subject, SANs and extensions are the
// platform's, so a device cannot ask for another thing's name or for a CA
// certificate. lifetime 0 means d.Lifetime.
func (d *DeviceCA) SignCSR(csr *x509.CertificateRequest, thingID, serial string, lifetime time.Duration) (*DeviceCert, error) {
	if csr == nil {
		return nil, errors.New("CSR: missing")
	}
	if err := d.checkRequest(thingID, serial, lifetime); err != nil {
		return nil, err
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR: signature does not verify with its own public key: %w", err)
	}
	return d.issue(csr.PublicKey, thingID, serial, lifetime)
}

// CheckPublicKey accepts the key types device certificates may certify.
func CheckPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrUnsupportedKey, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (want at least %d)", ErrUnsupportedKey, k.N.BitLen(), MinRSABits)
		}
	default:
		return fmt.Errorf("%w: %T (want ECDSA P-256/P-384, Ed25519 or RSA ≥ %d bits)", ErrUnsupportedKey, pub, MinRSABits)
	}
	return nil
}

func (d *DeviceCA) checkRequest(thingID, serial string, lifetime time.Duration) error {
	if thingID == "" {
		return errors.New("device certificate: thing id is empty")
	}
	for _, r := range thingID { // RFC 3986 unreserved: the id goes into a URN unescaped
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~') {
			return fmt.Errorf("device certificate: thing id %q may hold only letters, digits and - . _ ~", thingID)
		}
	}
	if serial == "" {
		return errors.New("device certificate: serial number is empty")
	}
	if len(serial) > maxSerialLen || !isPrintableString(serial) {
		return fmt.Errorf("device certificate: serial number %q must be 1 to %d characters of A-Z a-z 0-9 space ' ( ) + , - . / : = ?", serial, maxSerialLen)
	}
	if lifetime < 0 {
		return fmt.Errorf("device certificate: lifetime %v is negative", lifetime)
	}
	lifetime = d.Validity(lifetime)
	if time.Now().Add(lifetime).After(d.Cert.NotAfter) {
		return fmt.Errorf("device certificate: lifetime %v would outlive the device issuing CA (valid until %s)", lifetime, d.Cert.NotAfter.Format(time.DateOnly))
	}
	return nil
}

// isPrintableString: X.520 serialNumber is a PrintableString (RFC 5280 A.1).
func isPrintableString(s string) bool {
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case r == ' ' || r == '\'' || r == '(' || r == ')' || r == '+' || r == ',' || r == '-' ||
			r == '.' || r == '/' || r == ':' || r == '=' || r == '?':
		default:
			return false
		}
	}
	return true
}

// Validity is the lifetime of a certificate whose caller asked for lifetime
// (0: the CA's default).
func (d *DeviceCA) Validity(lifetime time.Duration) time.Duration {
	switch {
	case lifetime != 0:
		return lifetime
	case d.Lifetime != 0:
		return d.Lifetime
	}
	return DefaultDeviceLifetime
}

func (d *DeviceCA) issue(pub crypto.PublicKey, thingID, serial string, lifetime time.Duration) (*DeviceCert, error) {
	lifetime = d.Validity(lifetime)
	uri, _ := url.Parse(ThingURIPrefix + thingID)
	now := time.Now()
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment // TLS 1.2 RSA key exchange
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{SerialNumber: serial, CommonName: serial},
		NotBefore:    now.Add(-5 * time.Minute), // clock skew of the device
		NotAfter:     now.Add(lifetime),
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{uri},
	}
	if d.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{d.CRLURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.Cert, pub, d.key)
	if err != nil {
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &DeviceCert{Leaf: leaf, Chain: [][]byte{der, d.Cert.Raw}, FingerprintSHA256: hex.EncodeToString(sum[:])}, nil
}

// ThingID returns the thing id named by a device certificate's URI SAN.
func ThingID(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if s := u.String(); len(s) > len(ThingURIPrefix) && s[:len(ThingURIPrefix)] == ThingURIPrefix {
			return s[len(ThingURIPrefix):], true
		}
	}
	return "", false
}
