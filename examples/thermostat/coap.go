package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// coapMode is how the thermostat reaches the CoAP gateway: over DTLS with
// its pre-shared key (files pskIdentity, pskKey, as `thingid factory issue
// --psk` writes them) or with its factory certificate (certFile, keyFile).
type coapMode struct {
	url                 string // coaps://host:port
	pskIdentity, pskKey string // files
}

// dtlsConfig is the DTLS client's configuration: PSK suites with the
// thing's identity and key, or its certificate with the platform's CA.
func (c config) dtlsConfig(host string) (*piondtls.Config, string, error) {
	if c.coap.pskIdentity != "" {
		id, err1 := os.ReadFile(c.coap.pskIdentity)
		key, err2 := os.ReadFile(c.coap.pskKey)
		if err := errors.Join(err1, err2); err != nil {
			return nil, "", fmt.Errorf("the pre-shared key (--psk-identity-file, --psk-key-file): %w", err)
		}
		k := bytes.TrimSpace(key)
		return &piondtls.Config{
			PSK:                  func([]byte) ([]byte, error) { return k, nil },
			PSKIdentityHint:      bytes.TrimSpace(id),
			CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		}, "pre-shared key", nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("the factory identity (--cert, --key): %w", err)
	}
	return &piondtls.Config{
		Certificates:          []tls.Certificate{cert},
		RootCAs:               c.roots,
		ServerName:            host,
		ExtendedMasterSecret:  piondtls.RequireExtendedMasterSecret,
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
	}, "certificate", nil
}

// runCoAP is the thermostat on the CoAP gateway until ctx ends or the
// gateway ends its session: it calls home (GET /self) for its thing id and
// posts the room every interval to /mqtt/things/<id>/telemetry, which the
// broker publishes to the cloud service. Setpoints stay local: commands
// down over CoAP (Observe) are still to come.
func runCoAP(ctx context.Context, cfg config, out io.Writer) error {
	u, err := url.Parse(cfg.coap.url)
	if err != nil || u.Scheme != "coaps" || u.Host == "" {
		return fmt.Errorf("--coap %q: want coaps://host:port", cfg.coap.url)
	}
	dc, how, err := cfg.dtlsConfig(u.Hostname())
	if err != nil {
		return err
	}
	cc, err := dtls.Dial(u.Host, dc)
	if err != nil {
		return fmt.Errorf("DTLS to %s with the %s: %w", u.Host, how, err)
	}
	defer cc.Close()
	id, err := callHomeCoAP(ctx, cc, cfg.timeout)
	if err != nil {
		return fmt.Errorf("calling home on %s with the %s: %w", cfg.coap.url, how, err)
	}
	fmt.Fprintf(out, "thermostat %s called home over CoAP: %s accepted\n", id, how)
	r := room{Temperature: cfg.temperature, Setpoint: cfg.setpoint, Heating: "off"}
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cc.Done():
			return errors.New("the CoAP gateway ended the session (the thing disabled or unlinked, its key re-issued?)")
		case <-tick.C:
			r.step()
			b, _ := json.Marshal(r)
			if err := postCoAP(ctx, cc, "/mqtt/things/"+id+"/telemetry", b, cfg.timeout); err != nil {
				fmt.Fprintf(out, "telemetry not delivered: %v\n", err)
				continue
			}
			fmt.Fprintf(out, "telemetry %s\n", b)
		}
	}
}

// callHomeCoAP is GET /self: the thing the session proves. It is the
// session's first request, so a refused handshake shows here.
func callHomeCoAP(ctx context.Context, cc *udpClient.Conn, timeout time.Duration) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A handshake the server drops waits on a lock a request's context
	// does not reach: closing the connection ends it.
	stop := context.AfterFunc(tctx, func() { cc.Close() })
	defer stop()
	res, err := cc.Get(tctx, "/self")
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

// postCoAP posts JSON confirmably: the broker publishes it with QoS 1.
func postCoAP(ctx context.Context, cc *udpClient.Conn, path string, body []byte, timeout time.Duration) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := cc.Post(tctx, path, message.AppJSON, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if res.Code() != codes.Changed {
		return fmt.Errorf("POST %s: %v", path, res.Code())
	}
	return nil
}
