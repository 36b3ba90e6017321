// Package cli holds what the example programs share around their flags:
// reading the platform's CA file and a client secret, and running until
// Ctrl-C.
package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Roots reads the PEM file of the CA that issued the platform's TLS
// certificates (thingid's home/pki/ca.crt); "" means the system's roots.
func Roots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("the platform's CA (--ca): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the platform's CA (--ca): %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// ClientSecret reads a confidential client's secret from file or, when
// file is "", from $THINGID_CLIENT_SECRET; never from the command line,
// where every user of the machine sees it.
func ClientSecret(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--client-secret-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if s := os.Getenv("THINGID_CLIENT_SECRET"); s != "" {
		return s, nil
	}
	return "", errors.New("the client secret is missing: set THINGID_CLIENT_SECRET or --client-secret-file")
}

// Main runs run until it returns or the program is interrupted (SIGINT,
// SIGTERM), and exits: 0 when run succeeded or was interrupted, 1 with the
// error on stderr otherwise.
func Main(name string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err == nil || (interrupted && errors.Is(err, context.Canceled)) {
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
