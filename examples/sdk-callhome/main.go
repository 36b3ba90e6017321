// Command sdk-callhome is a device calling home with the thingid SDK: it loads
// the key and certificate the factory wrote, renews the certificate over EST
// when it is due, gets an access token over mutual TLS, and prints the
// token's claims after checking its signature with the platform's keys.
//
//	go run ./examples/sdk-callhome -server https://id.example.com \
//	    -ca ca.crt -cert factory/SN-000001/device.pem -key factory/SN-000001/device.key
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/thingid/thingid/sdk"
)

func main() {
	server := flag.String("server", "https://localhost:8443", "the platform's base URL (its OAuth issuer)")
	caFile := flag.String("ca", "", "PEM file of the CA that issued the platform's TLS certificate (thingid's $home/pki/ca.crt); empty: the system's")
	certFile := flag.String("cert", "device.pem", "the device certificate chain (PEM)")
	keyFile := flag.String("key", "device.key", "the device key (PEM)")
	scope := flag.String("scope", "", "space-separated scopes to ask for")
	flag.Parse()
	if err := run(*server, *caFile, *certFile, *keyFile, strings.Fields(*scope)); err != nil {
		log.Fatal(err)
	}
}

func run(server, caFile, certFile, keyFile string, scopes []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := sdk.Config{Server: server, CertFile: certFile, KeyFile: keyFile, Scopes: scopes}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	device, err := sdk.New(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("thing %s, certificate valid until %s\n", device.ThingID(), device.Certificate().NotAfter.Format(time.RFC3339))
	tokens, err := device.CallHome(ctx) // renews the certificate first when it is due
	if err != nil {
		return err
	}
	tok, err := tokens.TokenContext(ctx)
	if err != nil {
		return err
	}
	claims, err := verify(ctx, device, tok.AccessToken)
	if err != nil {
		return err
	}
	fmt.Printf("%s token, expires %s, claims:\n", tok.Type(), tok.Expiry.Format(time.RFC3339))
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(claims)
}

// verify checks the token with the keys the platform publishes (jwks_uri).
func verify(ctx context.Context, device *sdk.Client, raw string) (jwt.Token, error) {
	meta, err := device.Discover(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := device.PlatformClient().Get(meta.JWKSURI)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	keys, err := jwk.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("the platform's keys: %w", err)
	}
	return jwt.Parse([]byte(raw), jwt.WithKeySet(keys), jwt.WithIssuer(meta.Issuer))
}
