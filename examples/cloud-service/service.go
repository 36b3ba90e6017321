package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/examples/internal/mqttlink"
)

// Scopes is what the service asks for: every thing's telemetry, and
// commands to every thing (docs/broker.md).
var Scopes = []string{"mqtt:sub:things/+/telemetry", "mqtt:pub:things/+/commands/#"}

// config is what the flags set.
type config struct {
	server       string
	roots        *x509.CertPool
	clientID     string
	clientSecret string
	broker       string
	target       float64            // the setpoint every thermostat should have
	targets      map[string]float64 // per thing, overriding target
	resend       time.Duration      // before sending the same setpoint to a thing again
	timeout      time.Duration
	retryFor     time.Duration
}

// reading is the part of a thermostat's telemetry the service uses; other
// things' telemetry (a speaker's) lacks it and is ignored.
type reading struct {
	Temperature float64 `json:"temperature"`
	Setpoint    float64 `json:"setpoint"`
	Heating     string  `json:"heating"`
}

// parseTelemetry reads a thermostat's telemetry; ok is false for a message
// that is not one (or not a plausible one).
func parseTelemetry(payload []byte) (r reading, ok bool) {
	var raw struct {
		Temperature *float64 `json:"temperature"`
		Setpoint    *float64 `json:"setpoint"`
		Heating     string   `json:"heating"`
	}
	if len(payload) > 4<<10 || json.Unmarshal(payload, &raw) != nil || raw.Temperature == nil || raw.Setpoint == nil {
		return r, false
	}
	// A room between -50 and 80 °C; a setpoint a thermostat could hold.
	if !(*raw.Temperature >= -50 && *raw.Temperature <= 80) || !(*raw.Setpoint >= 0 && *raw.Setpoint <= 50) || (raw.Heating != "on" && raw.Heating != "off") {
		return r, false
	}
	return reading{Temperature: *raw.Temperature, Setpoint: *raw.Setpoint, Heating: raw.Heating}, true
}

// thingOf is the thing a telemetry topic names: things/<id>/telemetry.
func thingOf(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "things/")
	id, ok2 := strings.CutSuffix(rest, "/telemetry")
	return id, ok && ok2 && id != "" && !strings.ContainsAny(id, "/+#")
}

// service follows every thermostat and refines its setpoint.
type service struct {
	cfg  config
	out  io.Writer
	sent map[string]sent // per thing: the last setpoint sent
}

type sent struct {
	setpoint float64
	at       time.Time
}

// desired is the setpoint the service wants for a thing.
func (s *service) desired(thing string) float64 {
	if v, ok := s.cfg.targets[thing]; ok {
		return v
	}
	return s.cfg.target
}

// decide is what to send to thing after a reading: a setpoint, or nothing
// when the thermostat already holds the desired one or was just told.
func (s *service) decide(thing string, r reading, now time.Time) (float64, bool) {
	want := s.desired(thing)
	if math.Abs(r.Setpoint-want) < 0.05 {
		delete(s.sent, thing)
		return 0, false
	}
	if last, ok := s.sent[thing]; ok && last.setpoint == want && now.Sub(last.at) < s.cfg.resend {
		return 0, false // on its way: give the thermostat time to apply it
	}
	s.sent[thing] = sent{want, now}
	return want, true
}

// run subscribes to every thing's telemetry with the service's token and
// publishes refined setpoints, until ctx ends or a failure it cannot get
// past.
func run(ctx context.Context, cfg config, out io.Writer) error {
	hc := &http.Client{Timeout: cfg.timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.roots, MinVersion: tls.VersionTLS12}}}
	cc := clientcredentials.Config{ClientID: cfg.clientID, ClientSecret: cfg.clientSecret,
		TokenURL: strings.TrimSuffix(cfg.server, "/") + "/oauth2/token", Scopes: Scopes}
	// A token is reused until 45 s before its expiry; the check every 30 s
	// below then hands the next one to the connection in time.
	tokens := oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, hc)), 45*time.Second)
	s := &service{cfg: cfg, out: out, sent: map[string]sent{}}
	msgs := make(chan mqttlink.Message, 256)
	var conn *mqttlink.Conn
	connect := func() error {
		tok, err := tokens.Token()
		if err != nil {
			return fmt.Errorf("getting the service's token from %s (client %s): %w", cc.TokenURL, cfg.clientID, err)
		}
		conn, err = mqttlink.Dial(ctx, mqttlink.Config{Broker: cfg.broker, RootCAs: cfg.roots, ClientID: cfg.clientID,
			Token: tok.AccessToken, Subscribe: []string{"things/+/telemetry"}, Timeout: cfg.timeout,
			OnMessage: func(topic string, payload []byte) {
				select {
				case msgs <- mqttlink.Message{Topic: topic, Payload: payload}:
				case <-ctx.Done():
				}
			}})
		if err != nil {
			return fmt.Errorf("connecting to the MQTT broker at %s: %w", cfg.broker, err)
		}
		fmt.Fprintf(out, "subscribed to things/+/telemetry on %s as %s\n", cfg.broker, cfg.clientID)
		return nil
	}
	if err := connect(); err != nil {
		return err
	}
	defer func() { conn.Close() }()
	// A new token re-authenticates the connection before the broker's
	// deadline (the token's expiry).
	refresh := time.NewTicker(30 * time.Second)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-msgs:
			s.handle(ctx, conn, m)
		case <-refresh.C:
			tok, err := tokens.Token()
			if err != nil {
				fmt.Fprintf(out, "getting a fresh token failed (%v); trying again\n", err)
				continue
			}
			if _, err := conn.Renew(ctx, tok.AccessToken, nil); err != nil {
				fmt.Fprintf(out, "re-authentication failed: %v\n", err)
				conn.Close()
			}
		case <-conn.Done():
			why := conn.Err()
			fmt.Fprintf(out, "MQTT connection ended: %v\n", errOr(why, "closed"))
			if mqttlink.Revoked(why) {
				return fmt.Errorf("the broker no longer accepts the service: %w", why)
			}
			if err := mqttlink.Retry(ctx, cfg.retryFor, func(err error, wait time.Duration) {
				fmt.Fprintf(out, "%v; trying again in %s\n", err, wait)
			}, connect); err != nil {
				return err
			}
		}
	}
}

// handle reads one telemetry message and sends a refined setpoint if needed.
func (s *service) handle(ctx context.Context, conn *mqttlink.Conn, m mqttlink.Message) {
	thing, ok := thingOf(m.Topic)
	if !ok {
		return
	}
	r, ok := parseTelemetry(m.Payload)
	if !ok {
		return // not a thermostat
	}
	v, send := s.decide(thing, r, time.Now())
	fmt.Fprintf(s.out, "%s: %.1f °C, setpoint %.1f, heating %s", thing, r.Temperature, r.Setpoint, r.Heating)
	if !send {
		fmt.Fprintln(s.out)
		return
	}
	topic := "things/" + thing + "/commands/setpoint"
	if err := conn.Publish(ctx, topic, []byte(strconv.FormatFloat(v, 'f', 1, 64))); err != nil {
		fmt.Fprintf(s.out, "; setpoint %.1f not sent: %v\n", v, err)
		return
	}
	fmt.Fprintf(s.out, " → setpoint %.1f sent\n", v)
}

func errOr(err error, s string) string {
	if err == nil {
		return s
	}
	return err.Error()
}
