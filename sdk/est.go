package sdk

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// RenewIfDue renews the device certificate over EST when the part of its
// lifetime set by Config.RenewAfter (2/3 by default) has passed, and tells
// whether it did.
func (c *Client) RenewIfDue(ctx context.Context) (bool, error) {
	cert := c.currentCert()
	if cert == nil {
		return false, nil
	}
	after := c.cfg.RenewAfter
	if after < 0 {
		after = DefaultRenewAfter
	}
	if time.Now().Before(renewalTime(cert.Leaf, after)) {
		return false, nil
	}
	return true, c.Renew(ctx)
}

// renewalTime is when a certificate becomes due for renewal.
func renewalTime(c *x509.Certificate, after float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * after))
}

// autoRenew is the renewal done before fetching a token: a failure is only
// logged while the certificate is still valid, since it still works.
func (c *Client) autoRenew(ctx context.Context) error {
	cert := c.currentCert()
	if c.cfg.RenewAfter < 0 || cert == nil || ThingID(cert.Leaf) == "" {
		return nil // not a certificate of the platform: nothing to renew there
	}
	if _, err := c.RenewIfDue(ctx); err != nil {
		if time.Now().After(cert.Leaf.NotAfter) {
			return fmt.Errorf("%w: %v", ErrCertificateExpired, err)
		}
		c.log.Warn("sdk: renewing the device certificate failed; the current one is still valid, will try again",
			"notAfter", cert.Leaf.NotAfter, "err", err)
	}
	return nil
}

// Renew replaces the device certificate now (EST simplereenroll, RFC 7030
// §4.2.2): a new key of the same type, a CSR with the current subject,
// authenticated by the current certificate over mutual TLS. The new key and
// certificate are staged next to Config.KeyFile and Config.CertFile and
// renamed into place, so a crash never leaves a key without its
// certificate. Tokens bound to the old certificate are fetched anew.
func (c *Client) Renew(ctx context.Context) error {
	c.renewMu.Lock()
	defer c.renewMu.Unlock()
	cur := c.currentCert()
	if cur == nil {
		return errors.New("sdk: there is no device certificate to renew: set Config.CertFile and Config.KeyFile")
	}
	if time.Now().After(cur.Leaf.NotAfter) {
		return ErrCertificateExpired
	}
	key, err := newKeyLike(cur.PrivateKey.(crypto.Signer).Public())
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{
		RawSubject: cur.Leaf.RawSubject, // RFC 7030 §4.2.2: the same subject and names
		DNSNames:   cur.Leaf.DNSNames, EmailAddresses: cur.Leaf.EmailAddresses,
		IPAddresses: cur.Leaf.IPAddresses, URIs: cur.Leaf.URIs,
	}
	kn, cn := pendingKey(c.cfg.KeyFile), pendingCert(c.cfg.CertFile)
	os.Remove(cn) // a staged certificate of an abandoned attempt must not pair with the new key
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	if err := writeFileSynced(kn, keyPEM, 0o600); err != nil {
		return fmt.Errorf("sdk: staging the new key next to %s: %w", c.cfg.KeyFile, err)
	}
	pair, err := enroll(ctx, c.http, estURL(c.server, "simplereenroll"), key, tmpl, nil)
	if err != nil {
		os.Remove(kn)
		return err
	}
	if got, want := ThingID(pair.Leaf), ThingID(cur.Leaf); got != want {
		os.Remove(kn)
		return fmt.Errorf("sdk: the renewed certificate names thing %q, not %q; keeping the current one", got, want)
	}
	if err := writeFileSynced(cn, chainPEM(pair.Certificate), 0o644); err != nil {
		os.Remove(kn)
		return fmt.Errorf("sdk: staging the new certificate next to %s: %w", c.cfg.CertFile, err)
	}
	if err := commitRenewal(c.cfg.CertFile, c.cfg.KeyFile); err != nil {
		return err
	}
	c.mu.Lock()
	c.cert = pair
	c.gen++
	c.mu.Unlock()
	// Connections made with the old certificate would keep presenting it.
	c.transport.CloseIdleConnections()
	c.log.Info("sdk: device certificate renewed", "thing", ThingID(pair.Leaf), "notAfter", pair.Leaf.NotAfter)
	return nil
}

// EnrollConfig is a first enrollment: the device has no platform
// certificate yet and proves itself with a one-time enrollment token (from
// `thingid devices enroll-token` or the admin API) or with a bootstrap
// certificate of its manufacturer's CA registered on the platform.
type EnrollConfig struct {
	Server  string         // the platform's base URL
	RootCAs *x509.CertPool // nil: the system's
	// ThingID and Token: the enrollment token made for this thing.
	ThingID, Token string
	// Bootstrap is the manufacturer certificate to present instead of a token.
	Bootstrap *tls.Certificate
	// CertFile and KeyFile receive the new certificate chain and key (an
	// ECDSA P-256 key made here; it never leaves the device).
	CertFile, KeyFile string
	Timeout           time.Duration // of the request; 0 means 30 seconds
}

// Enroll gets a first platform certificate over EST simpleenroll (RFC 7030
// §4.2.1) and writes it and its new key, after which New can load them.
func Enroll(ctx context.Context, cfg EnrollConfig) error {
	if (cfg.Token == "") == (cfg.Bootstrap == nil) {
		return errors.New("sdk: enroll with either an enrollment token (ThingID and Token) or a Bootstrap certificate")
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return errors.New("sdk: EnrollConfig.CertFile and KeyFile say where the new certificate and key go")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("sdk: EnrollConfig.Server %q must be an https URL", cfg.Server)
	}
	tlsConf := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if cfg.Bootstrap != nil {
		tlsConf.Certificates = []tls.Certificate{*cfg.Bootstrap}
	}
	tr := &http.Transport{TLSClientConfig: tlsConf, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	key, err := newKeyLike(nil)
	if err != nil {
		return err
	}
	pair, err := enroll(ctx, &http.Client{Transport: tr, Timeout: cfg.Timeout}, estURL(u, "simpleenroll"), key, &x509.CertificateRequest{},
		func(r *http.Request) {
			if cfg.Token != "" {
				r.SetBasicAuth(cfg.ThingID, cfg.Token) // RFC 7030 §3.2.3
			}
		})
	if err != nil {
		return err
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	if err := writeFileSynced(cfg.KeyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("sdk: writing the key: %w", err)
	}
	if err := writeFileSynced(cfg.CertFile, chainPEM(pair.Certificate), 0o644); err != nil {
		return fmt.Errorf("sdk: writing the certificate: %w", err)
	}
	return nil
}

// maxESTBody bounds an EST answer: a few certificates in base64.
const maxESTBody = 256 << 10

// estURL is the EST operation's address: /.well-known/est at the server's
// host (RFC 7030 §3.2.2).
func estURL(server *url.URL, op string) string {
	return (&url.URL{Scheme: server.Scheme, Host: server.Host, Path: "/.well-known/est/" + op}).String()
}

// enroll sends a CSR for key to an EST operation and returns the issued
// certificate (with the rest of the chain the server sent) paired with key.
func enroll(ctx context.Context, hc *http.Client, target string, key crypto.Signer, tmpl *x509.CertificateRequest,
	auth func(*http.Request)) (*tls.Certificate, error) {
	op := path.Base(target)
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("sdk: making the CSR: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(base64.StdEncoding.EncodeToString(der)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/pkcs10")
	req.Header.Set("Content-Transfer-Encoding", "base64")
	if auth != nil {
		auth(req)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: EST %s: %w", op, explainTransport(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxESTBody))
	if err != nil {
		return nil, fmt.Errorf("sdk: EST %s: %w", op, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusAccepted:
		// RFC 7030 §4.2.3: manual approval; this platform never defers.
		return nil, fmt.Errorf("sdk: EST %s: the platform deferred the request (202); try again after %s", op, resp.Header.Get("Retry-After"))
	default:
		// RFC 7030 §4.2.3: the body of an error is for a person to read.
		return nil, fmt.Errorf("sdk: EST %s refused (%s): %s", op, resp.Status, strings.TrimSpace(string(body)))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Map(dropSpace, string(body)))
	if err != nil {
		return nil, fmt.Errorf("sdk: EST %s: the answer is not base64: %w", op, err)
	}
	certs, err := ParseCertsOnly(raw)
	if err != nil {
		return nil, fmt.Errorf("sdk: EST %s: %w", op, err)
	}
	var leaf *x509.Certificate
	chain := [][]byte{nil}
	for _, crt := range certs {
		switch {
		case leaf == nil && samePublicKey(key.Public(), crt.PublicKey):
			leaf, chain[0] = crt, crt.Raw
		case !bytes.Equal(crt.RawIssuer, crt.RawSubject): // the chain without self-signed roots
			chain = append(chain, crt.Raw)
		}
	}
	if leaf == nil {
		return nil, fmt.Errorf("sdk: EST %s: the answer holds no certificate for the key of the CSR", op)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

func dropSpace(r rune) rune {
	if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
		return -1
	}
	return r
}

// ParseCertsOnly reads a certs-only CMS SignedData (RFC 5272 §4.1), the
// answer of EST cacerts and enrollments, and returns its certificates.
func ParseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if rest, err := asn1.Unmarshal(der, &ci); err != nil || len(rest) > 0 {
		return nil, errors.New("not a CMS ContentInfo")
	}
	if !ci.ContentType.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}) {
		return nil, fmt.Errorf("CMS content type %v is not signedData", ci.ContentType)
	}
	// The fields after the certificates (crls, signerInfos) are not read.
	var sd struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		EncapContentInfo asn1.RawValue
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("CMS SignedData: %w", err)
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("the CMS SignedData holds no certificates")
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CMS SignedData certificates: %w", err)
	}
	return certs, nil
}

// newKeyLike makes a key of the type and size of pub (ECDSA P-256 when pub is nil).
func newKeyLike(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, max(k.N.BitLen(), 2048))
	case nil:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("sdk: cannot make a key like %T", pub)
}

func marshalKey(k crypto.Signer) ([]byte, error) {
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("sdk: encoding the new key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), nil
}

func chainPEM(chain [][]byte) []byte {
	var b []byte
	for _, der := range chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return b
}
