// Package sdk is the device side of thingid, for device makers writing Go: it
// loads the key and certificate a device got at the factory, calls home over
// mutual TLS for certificate-bound tokens (RFC 8705), pairs the device with
// its owner through the device flow (RFC 8628), renews the certificate over
// EST (RFC 7030) before it expires, and signs requests with DPoP (RFC 9449).
// It depends on the standards only, never on thingid's server packages.
package sdk

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config says where the platform is and who the device is.
type Config struct {
	// Server is the platform's base URL, which is its OAuth issuer, such as
	// https://id.example.com.
	Server string
	// CertFile and KeyFile are the device's certificate chain (PEM, the
	// device certificate first) and private key (PEM: PKCS#8, SEC 1 or
	// PKCS#1), as `thingid factory issue` writes them (device.pem and
	// device.key). A renewal replaces both files. Leave both empty for a
	// device without a certificate (a public client with DPoPKey).
	CertFile, KeyFile string
	// RootCAs verify the platform's TLS certificate; nil uses the system's.
	RootCAs *x509.CertPool
	// ClientID is the OAuth client the device is. By default it is the thing
	// id the certificate names: every thing is a client under its own id.
	ClientID string
	// Scopes are asked for when calling home and when pairing.
	Scopes []string
	// DPoPKey, when set, signs a DPoP proof for every request to the
	// platform, so that the tokens the device gets are bound to it.
	DPoPKey crypto.Signer
	// RenewAfter is the fraction of the certificate's lifetime after which
	// it is renewed, before the device calls home; 0 means 2/3, a negative
	// value turns automatic renewal off (Renew still works).
	RenewAfter float64
	// Timeout bounds each HTTP request; 0 means 30 seconds.
	Timeout time.Duration
	// Logger receives what goes wrong in the background, such as an
	// automatic renewal that failed while the certificate is still valid;
	// nil means slog.Default().
	Logger *slog.Logger
}

// DefaultRenewAfter is the fraction of a certificate's lifetime after which
// it is renewed by default.
const DefaultRenewAfter = 2.0 / 3

// Client talks to one thingid platform as one device. It is safe for
// concurrent use.
type Client struct {
	cfg       Config
	server    *url.URL
	log       *slog.Logger
	transport *http.Transport
	dpop      *DPoP
	// http sends requests to the platform: mutual TLS when the device has a
	// certificate, DPoP proofs when it has a DPoP key.
	http *http.Client

	mu   sync.Mutex
	cert *tls.Certificate // nil without a certificate
	gen  int              // incremented by each renewal
	meta *Metadata

	renewMu sync.Mutex // one renewal at a time
}

// New loads the device's key and certificate (finishing a renewal that a
// crash interrupted) and prepares the HTTP client. It does not contact the
// platform.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("sdk: Config.Server %q must be an https URL without query or fragment, such as https://id.example.com", cfg.Server)
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("sdk: set both Config.CertFile and Config.KeyFile (device.pem and device.key), or neither")
	}
	if cfg.RenewAfter == 0 {
		cfg.RenewAfter = DefaultRenewAfter
	}
	if cfg.RenewAfter >= 1 {
		return nil, fmt.Errorf("sdk: Config.RenewAfter %v must be below 1 (a fraction of the certificate's lifetime)", cfg.RenewAfter)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	c := &Client{cfg: cfg, server: u, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	if cfg.CertFile != "" {
		if err := finishRenewal(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, err
		}
		pair, err := loadPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		c.cert = &pair
	}
	if c.cfg.ClientID == "" && c.cert != nil {
		c.cfg.ClientID = ThingID(c.cert.Leaf)
	}
	if c.cfg.ClientID == "" {
		return nil, errors.New("sdk: no client id: the certificate names no thing (no URI SAN " + ThingURIPrefix +
			"...), or there is no certificate; set Config.ClientID")
	}
	tlsConf := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if c.cert != nil {
		tlsConf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.currentCert(), nil
		}
	}
	c.transport = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	var rt http.RoundTripper = c.transport
	if cfg.DPoPKey != nil {
		if c.dpop, err = NewDPoP(cfg.DPoPKey, c.transport); err != nil {
			return nil, err
		}
		rt = c.dpop
	}
	c.http = &http.Client{Transport: rt, Timeout: cfg.Timeout}
	return c, nil
}

// ThingID is the thing the device certificate names, "" without one.
func (c *Client) ThingID() string {
	if cert := c.currentCert(); cert != nil {
		return ThingID(cert.Leaf)
	}
	return ""
}

// ClientID is the OAuth client the device acts as.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// Certificate is the device certificate in use, nil without one.
func (c *Client) Certificate() *x509.Certificate {
	if cert := c.currentCert(); cert != nil {
		return cert.Leaf
	}
	return nil
}

func (c *Client) currentCert() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

func (c *Client) generation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// PlatformClient is the HTTP client the SDK itself uses towards the
// platform: mutual TLS with the device certificate, DPoP proofs with the
// DPoP key. It adds no access token; see HTTPClient for that.
func (c *Client) PlatformClient() *http.Client { return c.http }

// CloseIdleConnections closes the connections kept open to the platform.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// issuer is the configured server as an OAuth issuer identifier: no
// trailing slash (RFC 8414 §2).
func (c *Client) issuer() string { return strings.TrimSuffix(c.cfg.Server, "/") }
