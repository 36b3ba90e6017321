package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/thingid/thingid/examples/thermostat/coaplink"
)

// coapMode is how the thermostat reaches the CoAP gateway: over DTLS with
// its pre-shared key (files pskIdentity, pskKey, as `thingid factory issue
// --psk` writes them) or with its factory certificate (--cert, --key).
type coapMode struct {
	url                 string // coaps://host:port
	pskIdentity, pskKey string // files
}

// runCoAP is the thermostat on the CoAP gateway until ctx ends or the
// gateway ends its session: it calls home (GET /self) for its thing id and
// posts the room every interval to /mqtt/things/<id>/telemetry, which the
// broker publishes to the cloud service. Setpoints stay local: commands
// down over CoAP (Observe) are still to come.
func runCoAP(ctx context.Context, cfg config, out io.Writer) error {
	l, err := coaplink.Dial(ctx, coaplink.Config{URL: cfg.coap.url, PSKIdentityFile: cfg.coap.pskIdentity, PSKKeyFile: cfg.coap.pskKey,
		CertFile: cfg.certFile, KeyFile: cfg.keyFile, RootCAs: cfg.roots, Timeout: cfg.timeout})
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(out, "thermostat %s called home over CoAP: %s accepted\n", l.ThingID, l.Credential)
	r := room{Temperature: cfg.temperature, Setpoint: cfg.setpoint, Heating: "off"}
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.Done():
			return errors.New("the CoAP gateway ended the session (the thing disabled or unlinked, its key re-issued?)")
		case <-tick.C:
			r.step()
			b, _ := json.Marshal(r)
			if err := l.Telemetry(ctx, b); err != nil {
				fmt.Fprintf(out, "telemetry not delivered: %v\n", err)
				continue
			}
			fmt.Fprintf(out, "telemetry %s\n", b)
		}
	}
}
