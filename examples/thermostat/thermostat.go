package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/sdk"
)

// config is what the flags set.
type config struct {
	server            string
	roots             *x509.CertPool
	certFile, keyFile string
	broker            string
	interval          time.Duration // between two telemetry messages
	setpoint          float64       // until the cloud refines it
	temperature       float64       // of the room at start
	timeout           time.Duration // each wait on the network
	retryFor          time.Duration // reconnecting to a broker that stopped answering
	coap              coapMode      // url empty: MQTT
}

// Setpoints a thermostat accepts, in °C.
const (
	minSetpoint = 5.0
	maxSetpoint = 35.0
	hysteresis  = 0.5 // heating turns on below setpoint-0.5, off above setpoint+0.5
)

// room is the simulated room and the thermostat's state.
type room struct {
	Temperature float64 `json:"temperature"` // °C, one decimal
	Setpoint    float64 `json:"setpoint"`
	Heating     string  `json:"heating"` // on, off
}

// step advances the room by one interval: heating warms it, the outside
// cools it; the heating follows the setpoint with a hysteresis.
func (r *room) step() {
	if r.Heating == "on" {
		r.Temperature += 0.4
	} else {
		r.Temperature -= 0.2
	}
	r.Temperature = math.Round(r.Temperature*10) / 10
	switch {
	case r.Temperature < r.Setpoint-hysteresis:
		r.Heating = "on"
	case r.Temperature > r.Setpoint+hysteresis:
		r.Heating = "off"
	}
}

// parseSetpoint reads a setpoint command: a temperature in °C, as plain
// text ("21.5") or as the JSON number the cloud service sends.
func parseSetpoint(payload []byte) (float64, error) {
	s := strings.TrimSpace(string(payload))
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v < minSetpoint || v > maxSetpoint {
		if len(s) > 20 {
			s = s[:20] + "…"
		}
		return 0, fmt.Errorf("setpoint %q: want a temperature from %g to %g °C", strings.ToValidUTF8(s, "?"), minSetpoint, maxSetpoint)
	}
	return math.Round(v*10) / 10, nil
}

// run is the thermostat until ctx ends or a failure it cannot get past:
// it calls home for a token of its own (bound to its certificate),
// connects to the broker, publishes the room every interval on
// things/<id>/telemetry and applies setpoints from
// things/<id>/commands/setpoint.
func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.coap.url != "" {
		return runCoAP(ctx, cfg, out)
	}
	dev, err := sdk.New(sdk.Config{Server: cfg.server, CertFile: cfg.certFile, KeyFile: cfg.keyFile, RootCAs: cfg.roots, Timeout: cfg.timeout})
	if err != nil {
		return fmt.Errorf("the factory identity (--cert, --key): %w", err)
	}
	id := dev.ThingID()
	if id == "" {
		return fmt.Errorf("%s names no thing: it is not a certificate from the platform's device CA", cfg.certFile)
	}
	tctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	ts, err := dev.CallHome(tctx)
	cancel()
	if err != nil {
		return fmt.Errorf("calling home to %s: %w", cfg.server, err)
	}
	fmt.Fprintf(out, "thermostat %s called home: certificate accepted, token issued\n", id)
	t := &thermostat{cfg: cfg, out: out, dev: dev, ts: ts, id: id, msgs: make(chan mqttlink.Message, 16),
		room: room{Temperature: cfg.temperature, Setpoint: cfg.setpoint, Heating: "off"}}
	if err := t.connect(ctx); err != nil {
		return err
	}
	defer func() { t.conn.Close() }()
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-t.msgs:
			t.apply(m)
		case <-t.conn.Done():
			if err := t.reconnect(ctx, t.conn.Err()); err != nil {
				return err
			}
		case <-tick.C:
			if err := t.keepFresh(ctx); err != nil {
				return err
			}
			t.room.step()
			t.publish(ctx)
		}
	}
}

type thermostat struct {
	cfg  config
	out  io.Writer
	dev  *sdk.Client
	ts   *sdk.TokenSource
	id   string
	conn *mqttlink.Conn
	msgs chan mqttlink.Message
	room room
}

// connect opens the MQTT connection with the device certificate and a
// fresh token.
func (t *thermostat) connect(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, t.cfg.timeout)
	defer cancel()
	tok, err := t.ts.TokenContext(tctx)
	if err != nil {
		return err
	}
	cert, err := mqttlink.LoadCertificate(t.cfg.certFile, t.cfg.keyFile, t.dev.Certificate())
	if err != nil {
		return err
	}
	conn, err := mqttlink.Dial(ctx, mqttlink.Config{
		Broker: t.cfg.broker, RootCAs: t.cfg.roots, Certificate: cert, ClientID: t.id, Token: tok.AccessToken,
		Subscribe: []string{"things/" + t.id + "/commands/setpoint"}, Timeout: t.cfg.timeout,
		OnMessage: func(topic string, payload []byte) {
			select {
			case t.msgs <- mqttlink.Message{Topic: topic, Payload: payload}:
			case <-ctx.Done():
			}
		},
	})
	if err != nil {
		return fmt.Errorf("connecting to the MQTT broker at %s: %w", t.cfg.broker, err)
	}
	t.conn = conn
	fmt.Fprintf(t.out, "connected to %s, waiting for setpoints on things/%s/commands/setpoint\n", t.cfg.broker, t.id)
	return nil
}

// reconnect follows a lost connection: a refusal ends the run (the thing
// was disabled, its certificate revoked), anything else is retried for
// retryFor.
func (t *thermostat) reconnect(ctx context.Context, why error) error {
	fmt.Fprintf(t.out, "MQTT connection ended: %v\n", why)
	if mqttlink.Revoked(why) {
		return fmt.Errorf("the broker no longer accepts the thermostat: %w", why)
	}
	return mqttlink.Retry(ctx, t.cfg.retryFor, func(err error, wait time.Duration) {
		fmt.Fprintf(t.out, "%v; trying again in %s\n", err, wait)
	}, func() error { return t.connect(ctx) })
}

// keepFresh gets a new token before the current one expires (renewing the
// certificate first when due) and hands it to the connection.
func (t *thermostat) keepFresh(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, t.cfg.timeout)
	defer cancel()
	tok, err := t.ts.TokenContext(tctx)
	if err != nil {
		// The current token works until it expires; then the broker ends
		// the connection and reconnecting retries.
		fmt.Fprintf(t.out, "getting a fresh token failed (%v); trying again at the next tick\n", err)
		return nil
	}
	did, err := t.conn.Renew(tctx, tok.AccessToken, t.dev.Certificate())
	switch {
	case err != nil:
		t.conn.Close()
		return t.reconnect(ctx, err) // a renewed certificate needs a new handshake
	case did:
		fmt.Fprintln(t.out, "new token: the MQTT connection re-authenticated")
	}
	return nil
}

func (t *thermostat) publish(ctx context.Context) {
	b, _ := json.Marshal(t.room)
	if err := t.conn.Publish(ctx, "things/"+t.id+"/telemetry", b); err != nil {
		fmt.Fprintf(t.out, "telemetry not delivered: %v\n", err)
		return
	}
	fmt.Fprintf(t.out, "telemetry %s\n", b)
}

func (t *thermostat) apply(m mqttlink.Message) {
	v, err := parseSetpoint(m.Payload)
	if err != nil {
		fmt.Fprintf(t.out, "ignored a command: %v\n", err)
		return
	}
	if v != t.room.Setpoint {
		fmt.Fprintf(t.out, "setpoint %.1f °C → %.1f °C (from %s)\n", t.room.Setpoint, v, m.Topic)
		t.room.Setpoint = v
	}
}
