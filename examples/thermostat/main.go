// Command thermostat simulates a constrained device on thingid's MQTT
// broker: it calls home with its factory certificate for a token of its own
// (bound to that certificate), publishes the room's temperature, its
// setpoint and whether it heats on things/<id>/telemetry, and applies the
// setpoints a cloud service sends on things/<id>/commands/setpoint
// (examples/cloud-service). Ctrl-C stops it.
//
//	thingid factory issue --model Thermo-2 --count 1 --out factory
//	go run ./examples/thermostat --ca $THINGID_HOME/pki/ca.crt \
//	    --cert factory/Thermo-2-000001/device.pem --key factory/Thermo-2-000001/device.key
//
// With --coap it is a constrained device instead: it speaks CoAP over DTLS
// to the CoAP gateway, with its factory certificate or with the pre-shared
// key of `thingid factory issue --psk`, and posts its telemetry to
// /mqtt/things/<id>/telemetry, which the broker publishes as if it came
// over MQTT:
//
//	go run ./examples/thermostat --coap coaps://127.0.0.1:5684 \
//	    --psk-identity-file factory/Thermo-2-000001/psk.identity \
//	    --psk-key-file factory/Thermo-2-000001/psk.key
//
// See docs/examples.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/thingid/thingid/examples/internal/cli"
)

func main() {
	var cfg config
	var caFile string
	flag.StringVar(&cfg.server, "server", "https://localhost:8443", "the platform's base URL (its OAuth issuer)")
	flag.StringVar(&caFile, "ca", "", "PEM file of the CA of the platform's TLS certificates (thingid's home/pki/ca.crt); empty: the system's")
	flag.StringVar(&cfg.certFile, "cert", "device.pem", "the factory's device certificate chain (PEM)")
	flag.StringVar(&cfg.keyFile, "key", "device.key", "the factory's device key (PEM)")
	flag.StringVar(&cfg.broker, "broker", "mqtts://localhost:8883", "the MQTT broker")
	flag.DurationVar(&cfg.interval, "interval", 5*time.Second, "time between two telemetry messages (and token checks)")
	flag.Float64Var(&cfg.setpoint, "setpoint", 19, "the setpoint (°C) until the cloud service refines it")
	flag.Float64Var(&cfg.temperature, "temperature", 17, "the room's temperature (°C) at start")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "how long to wait for any answer on the network")
	flag.DurationVar(&cfg.retryFor, "retry-for", 2*time.Minute, "how long to retry a broker that stopped answering")
	flag.StringVar(&cfg.coap.url, "coap", "", "the CoAP gateway (coaps://host:port): speak CoAP over DTLS instead of HTTPS and MQTT")
	flag.StringVar(&cfg.coap.pskIdentity, "psk-identity-file", "", "with --coap: the file of the PSK identity (factory issue --psk: psk.identity); empty: the certificate")
	flag.StringVar(&cfg.coap.pskKey, "psk-key-file", "", "with --coap: the file of the pre-shared key (psk.key)")
	flag.Parse()
	cli.Main("thermostat", func(ctx context.Context) error {
		if err := cfg.check(); err != nil {
			return err
		}
		roots, err := cli.Roots(caFile)
		if err != nil {
			return err
		}
		cfg.roots = roots
		return run(ctx, cfg, os.Stdout)
	})
}

// check refuses flags the thermostat cannot run with.
func (c config) check() error {
	switch {
	case c.interval <= 0 || c.timeout <= 0 || c.retryFor <= 0:
		return fmt.Errorf("--interval, --timeout and --retry-for must be positive")
	case (c.coap.pskIdentity == "") != (c.coap.pskKey == ""):
		return fmt.Errorf("--psk-identity-file and --psk-key-file go together")
	case c.coap.pskIdentity != "" && c.coap.url == "":
		return fmt.Errorf("--psk-identity-file needs --coap: a pre-shared key is for the CoAP gateway")
	case c.setpoint < minSetpoint || c.setpoint > maxSetpoint:
		return fmt.Errorf("--setpoint %g: want %g to %g °C", c.setpoint, minSetpoint, maxSetpoint)
	}
	return nil
}
