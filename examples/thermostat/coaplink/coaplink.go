// Package coaplink is a constrained thing's side of thingid's CoAP gateway
// (docs/coap.md), as the thermostat example speaks it: a DTLS session with
// the thing's pre-shared key (the files of `thingid factory issue --psk`)
// or its factory certificate, call home, and telemetry posted onto the
// broker's topic things/<id>/telemetry.
package coaplink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Config of a link. With PSKIdentityFile and PSKKeyFile the session uses
// the pre-shared key; otherwise CertFile and KeyFile, the server checked
// against RootCAs.
type Config struct {
	URL                         string // coaps://host:port
	PSKIdentityFile, PSKKeyFile string
	CertFile, KeyFile           string
	RootCAs                     *x509.CertPool
	Timeout                     time.Duration // each wait on the network
}

// Link is a DTLS session on the gateway that called home.
type Link struct {
	cc      *udpClient.Conn
	timeout time.Duration
	// ThingID is the thing the session proves; Credential says how
	// ("pre-shared key", "certificate").
	ThingID, Credential string
}

// Dial opens the session and calls home (GET /self), its first request, so
// that a refused handshake shows here.
func Dial(ctx context.Context, c Config) (*Link, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "coaps" || u.Host == "" {
		return nil, fmt.Errorf("CoAP gateway %q: want coaps://host:port", c.URL)
	}
	dc, how, err := c.dtlsConfig(u.Hostname())
	if err != nil {
		return nil, err
	}
	cc, err := dtls.Dial(u.Host, dc)
	if err != nil {
		return nil, fmt.Errorf("DTLS to %s with the %s: %w", u.Host, how, err)
	}
	l := &Link{cc: cc, timeout: c.Timeout, Credential: how}
	if l.ThingID, err = l.callHome(ctx); err != nil {
		cc.Close()
		return nil, fmt.Errorf("calling home on %s with the %s: %w", c.URL, how, err)
	}
	return l, nil
}

// dtlsConfig is the DTLS client's configuration: a PSK suite with the
// thing's identity and key, or its certificate with the platform's CA.
func (c Config) dtlsConfig(host string) (*piondtls.Config, string, error) {
	if c.PSKIdentityFile != "" || c.PSKKeyFile != "" {
		id, err1 := os.ReadFile(c.PSKIdentityFile)
		key, err2 := os.ReadFile(c.PSKKeyFile)
		if err := errors.Join(err1, err2); err != nil {
			return nil, "", fmt.Errorf("the pre-shared key: %w", err)
		}
		k := bytes.TrimSpace(key)
		return &piondtls.Config{
			PSK:                  func([]byte) ([]byte, error) { return k, nil },
			PSKIdentityHint:      bytes.TrimSpace(id),
			CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		}, "pre-shared key", nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, "", fmt.Errorf("the factory certificate: %w", err)
	}
	return &piondtls.Config{
		Certificates:          []tls.Certificate{cert},
		RootCAs:               c.RootCAs,
		ServerName:            host,
		ExtendedMasterSecret:  piondtls.RequireExtendedMasterSecret,
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
	}, "certificate", nil
}

// callHome is GET /self: the thing the session proves.
func (l *Link) callHome(ctx context.Context) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	// A handshake the server drops waits on a lock a request's context
	// does not reach: closing the connection ends it.
	stop := context.AfterFunc(tctx, func() { l.cc.Close() })
	defer stop()
	res, err := l.cc.Get(tctx, "/self")
	if err != nil {
		return "", fmt.Errorf("no answer (a refused handshake looks like this): %w", err)
	}
	if res.Code() != codes.Content {
		return "", fmt.Errorf("GET /self: %v", res.Code())
	}
	body, err := res.ReadBody()
	if err != nil {
		return "", err
	}
	var self struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &self); err != nil || self.ID == "" {
		return "", fmt.Errorf("GET /self answered %q", strings.ToValidUTF8(string(body), "?"))
	}
	return self.ID, nil
}

// Telemetry posts a JSON payload, confirmably, to
// /mqtt/things/<id>/telemetry: the broker publishes it with QoS 1.
func (l *Link) Telemetry(ctx context.Context, payload []byte) error {
	tctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	path := "/mqtt/things/" + l.ThingID + "/telemetry"
	res, err := l.cc.Post(tctx, path, message.AppJSON, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	if res.Code() != codes.Changed {
		return fmt.Errorf("POST %s: %v", path, res.Code())
	}
	return nil
}

// Done is closed when the session ends (the gateway ended it, or Close).
func (l *Link) Done() <-chan struct{} { return l.cc.Done() }

// Close ends the session.
func (l *Link) Close() error { return l.cc.Close() }
