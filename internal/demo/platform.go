package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
)

// readyTimeout bounds the wait for the platform to answer after it starts.
const readyTimeout = 30 * time.Second

// platform is thingid serving in this process on the demo's data directory.
type platform struct {
	*server.Platform
	endpoints
	// moved are notes on configured addresses that were busy.
	moved []string
	stop  func() error
}

// endpoints are where the story's participants reach the platform.
type endpoints struct {
	URL        string // the platform, its OAuth issuer
	GatewayURL string
	BrokerURL  string // mqtts://localhost:port
	CoAPURL    string // coaps://127.0.0.1:port
	CAFile     string // the platform CA that issued the TLS certificates
	Roots      *x509.CertPool
}

// client is an HTTPS client that trusts the platform's CA, with a timeout
// on every request.
func (e endpoints) client() *http.Client {
	return &http.Client{Timeout: stepTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.Roots, MinVersion: tls.VersionTLS12}}}
}

// platformConfig is the default configuration on home with the gateway on,
// the listeners on the given addresses.
func platformConfig(home, httpAddr, gatewayAddr, brokerAddr, coapAddr string, log config.Log) (config.Config, error) {
	c := config.Default()
	c.Home = home
	c.Log = log
	c.HTTP.Address = httpAddr
	c.Gateway.Enabled = true
	c.Gateway.Address = gatewayAddr
	c.MQTT.Enabled, c.MQTT.TLS.Enabled = true, true
	c.MQTT.TLS.Address = brokerAddr
	c.CoAP.Enabled = true
	c.CoAP.DTLSAddress = coapAddr
	c.CoAP.UDPAddress = "" // the demo's thermostat speaks DTLS only
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, nil
}

// startPlatform runs thingid on opts.Home until stop is called, and waits
// until it answers. prepare, if not nil, runs on the opened platform before
// it serves: what the configuration must know at start (a trusted resource
// server) is made there.
func startPlatform(ctx context.Context, opts Options, log *slog.Logger, prepare func(*server.Platform) error) (*platform, error) {
	var moved []string
	note := func(n string) {
		if n != "" {
			moved = append(moved, n)
		}
	}
	ln, n, err := listen(opts.HTTPAddress)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (http.address): %w", opts.HTTPAddress, err)
	}
	note(n)
	pick := func(addr, field string) (string, error) {
		l, n, err := listen(addr)
		if err != nil {
			return "", fmt.Errorf("listen on %s (%s): %w", addr, field, err)
		}
		note(n)
		// Free again for the platform to take a moment later.
		defer l.Close()
		return l.Addr().String(), nil
	}
	gatewayAddr, err := pick(opts.GatewayAddress, "gateway.address")
	if err != nil {
		ln.Close()
		return nil, err
	}
	brokerAddr, err := pick(opts.BrokerAddress, "mqtt.tls.address")
	if err != nil {
		ln.Close()
		return nil, err
	}
	coapAddr, n, err := freeUDP(opts.CoAPAddress)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s (coap.dtlsAddress): %w", opts.CoAPAddress, err)
	}
	note(n)
	cfg, err := platformConfig(opts.Home, ln.Addr().String(), gatewayAddr, brokerAddr, coapAddr, opts.Log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p, err := server.Open(ctx, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if prepare != nil {
		if err := prepare(p); err != nil {
			ln.Close()
			return nil, errors.Join(err, p.Close())
		}
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan struct{})
	var serveErr error
	// Serve's notes for the operator (the administrator's one-time
	// password, the addresses) are in the data directory and the demo's
	// own lines.
	go func() {
		defer close(served)
		serveErr = p.Serve(sctx, ln, log, io.Discard)
	}()
	stop := sync.OnceValue(func() error {
		cancel()
		<-served
		return errors.Join(serveErr, p.Close())
	})
	_, brokerPort, _ := net.SplitHostPort(brokerAddr)
	_, coapPort, _ := net.SplitHostPort(coapAddr)
	pl := &platform{Platform: p, moved: moved, stop: stop, endpoints: endpoints{
		URL: cfg.HTTP.PublicURL, GatewayURL: cfg.Gateway.PublicURL, BrokerURL: "mqtts://localhost:" + brokerPort,
		CoAPURL: "coaps://127.0.0.1:" + coapPort,
		CAFile:  filepath.Join(cfg.Home, "pki", "ca.crt"),
	}}
	if err := pl.waitReady(ctx, served, func() error { return serveErr }); err != nil {
		stop()
		return nil, err
	}
	return pl, nil
}

// waitReady waits until the platform's CA file exists and /readyz answers
// 200, or Serve ends (served is closed; why says with what error).
func (pl *platform) waitReady(parent context.Context, served <-chan struct{}, why func() error) error {
	ctx, cancel := context.WithTimeout(parent, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		last := pl.ready(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-served:
			err := why()
			if err == nil {
				err = errors.New("it stopped")
			}
			return fmt.Errorf("the platform did not start: %w", err)
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("interrupted while waiting for the platform to start: %w", parent.Err())
			}
			return fmt.Errorf("timed out after %s waiting for the platform at %s to answer /readyz: %w", readyTimeout, pl.URL, last)
		case <-tick.C:
		}
	}
}

func (pl *platform) ready(ctx context.Context) error {
	if pl.Roots == nil {
		pem, err := os.ReadFile(pl.CAFile)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no certificate yet", pl.CAFile)
		}
		pl.Roots = roots
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pl.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := pl.client().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// listen listens on addr, or on a free port of the same host when addr's
// port is taken (a `thingid serve` running on the default ports, say); the
// note then says so.
func listen(addr string) (ln net.Listener, note string, err error) {
	ln, err = net.Listen("tcp", addr)
	if err == nil {
		return ln, "", nil
	}
	host, _, serr := net.SplitHostPort(addr)
	if serr != nil || !errors.Is(err, syscall.EADDRINUSE) {
		return nil, "", err
	}
	if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
		return nil, "", err
	}
	return ln, fmt.Sprintf("%s is in use (is thingid serve running?): using %s instead", addr, ln.Addr()), nil
}

// freeUDP is addr when its UDP port is free, or a free port of the same
// host (noted) when it is taken; the socket is closed again for the
// platform to take a moment later.
func freeUDP(addr string) (string, string, error) {
	c, err := net.ListenPacket("udp", addr)
	note := ""
	if err != nil {
		host, _, serr := net.SplitHostPort(addr)
		if serr != nil || !errors.Is(err, syscall.EADDRINUSE) {
			return "", "", err
		}
		if c, err = net.ListenPacket("udp", net.JoinHostPort(host, "0")); err != nil {
			return "", "", err
		}
		note = fmt.Sprintf("%s is in use (is thingid serve running?): using %s instead", addr, c.LocalAddr())
	}
	defer c.Close()
	return c.LocalAddr().String(), note, nil
}
