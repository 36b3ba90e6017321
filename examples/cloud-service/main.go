// Command cloud-service is the manufacturer's cloud service of thingid's
// thermostat story: a confidential client with the client credentials grant
// that subscribes to every thing's telemetry on the MQTT broker with its
// service token and publishes a refined setpoint to each thermostat whose
// setpoint differs from the one it should hold (examples/thermostat).
// Ctrl-C stops it.
//
//	thingid clients create --name fleet --grant-type client_credentials \
//	    --scope 'mqtt:sub:things/+/telemetry' --scope 'mqtt:pub:things/+/commands/#'
//	THINGID_CLIENT_SECRET=... go run ./examples/cloud-service --ca $THINGID_HOME/pki/ca.crt \
//	    --client-id CLIENT_ID --target 21.5
//
// See docs/examples.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/examples/internal/cli"
)

// Setpoints the service sends, in °C (what a thermostat accepts).
const minSetpoint, maxSetpoint = 5.0, 35.0

func main() {
	cfg := config{targets: map[string]float64{}}
	var caFile, secretFile string
	flag.StringVar(&cfg.server, "server", "https://localhost:8443", "the platform's base URL (its OAuth issuer)")
	flag.StringVar(&caFile, "ca", "", "PEM file of the CA of the platform's TLS certificates (thingid's home/pki/ca.crt); empty: the system's")
	flag.StringVar(&cfg.clientID, "client-id", "", "the service's client id (thingid clients create --grant-type client_credentials)")
	flag.StringVar(&secretFile, "client-secret-file", "", "file holding the client secret; empty: $THINGID_CLIENT_SECRET")
	flag.StringVar(&cfg.broker, "broker", "mqtts://localhost:8883", "the MQTT broker")
	flag.Float64Var(&cfg.target, "target", 21, "the setpoint (°C) every thermostat should hold")
	flag.Func("set", "THING_ID=°C: the setpoint of one thermostat, instead of --target (repeatable)", func(v string) error {
		thing, sp, err := parseTarget(v)
		if err == nil {
			cfg.targets[thing] = sp
		}
		return err
	})
	flag.DurationVar(&cfg.resend, "resend", 30*time.Second, "time before sending the same setpoint to a thermostat that has not applied it")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "how long to wait for any answer on the network")
	flag.DurationVar(&cfg.retryFor, "retry-for", 2*time.Minute, "how long to retry a broker that stopped answering")
	flag.Parse()
	cli.Main("cloud-service", func(ctx context.Context) error {
		if err := cfg.check(); err != nil {
			return err
		}
		secret, err := cli.ClientSecret(secretFile)
		if err != nil {
			return err
		}
		cfg.clientSecret = secret
		if cfg.roots, err = cli.Roots(caFile); err != nil {
			return err
		}
		return run(ctx, cfg, os.Stdout)
	})
}

// parseTarget reads THING_ID=°C.
func parseTarget(v string) (string, float64, error) {
	thing, value, ok := strings.Cut(v, "=")
	sp, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
	switch {
	case !ok || thing == "" || strings.ContainsAny(thing, "/+# "):
		return "", 0, fmt.Errorf("%q: want THING_ID=°C, such as 01a2…=21.5", v)
	case err != nil || !(sp >= minSetpoint && sp <= maxSetpoint):
		return "", 0, fmt.Errorf("%q: the setpoint must be %g to %g °C", v, minSetpoint, maxSetpoint)
	}
	return thing, sp, nil
}

// check refuses flags the service cannot run with.
func (c config) check() error {
	switch {
	case c.clientID == "":
		return errors.New("--client-id is required (thingid clients create --grant-type client_credentials)")
	case !(c.target >= minSetpoint && c.target <= maxSetpoint):
		return fmt.Errorf("--target %g: want %g to %g °C", c.target, minSetpoint, maxSetpoint)
	case c.resend <= 0 || c.timeout <= 0 || c.retryFor <= 0:
		return errors.New("--resend, --timeout and --retry-for must be positive")
	}
	return nil
}
