package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/coapgw"
	"github.com/thingid/thingid/internal/psk"
)

// startCoAP starts the CoAP gateway configured in coap (DTLS on the
// platform's server certificate, things authenticated by certs or by their
// pre-shared keys, the loopback UDP listener for local tools). stop closes
// the listeners and ends every session.
func (p *Platform) startCoAP(certs *certauth.Checker, mqtt *broker.Broker, reg prometheus.Registerer, log *slog.Logger, out io.Writer) (stop func(), err error) {
	c := p.Config.CoAP
	if !c.Enabled {
		return func() {}, nil
	}
	log = log.With("component", "coap")
	cert, err := p.serverCertificate()
	if err != nil {
		return nil, err
	}
	var (
		pub coapgw.Publisher
		sub coapgw.Subscriber
	)
	if mqtt != nil {
		pub, sub = coapBroker{mqtt, log}, coapBroker{mqtt, log}
	}
	gw, err := coapgw.New(coapgw.Options{
		Publisher:           pub,
		Subscriber:          sub,
		MaxObservers:        c.Limits.MaxObservers,
		ObserversPerSession: c.Limits.ObserversPerSession,
		MaxBody:             c.Limits.MaxBody,
		BlockTransfers:      c.Limits.BlockTransfers,
		BlockTimeout:        time.Duration(c.Limits.BlockTimeout),
		DTLSAddress:         c.DTLSAddress,
		UDPAddress:          c.UDPAddress,
		Certificate:         cert,
		Verifier:            certs,
		PSKs:                psk.NewKeys(p.Store, p.Key),
		Bus:                 p.Bus,
		MaxSessions:         c.Limits.MaxSessions,
		HandshakeTimeout:    time.Duration(c.Limits.HandshakeTimeout),
		HandshakesPerSecond: c.Limits.HandshakesPerSecond,
		HandshakeBurst:      c.Limits.HandshakeBurst,
		Resources:           aceResources(p.ace.Load()),
		AuthzInfo:           aceAuthzInfo(p.ace.Load()),
		Log:                 log,
		Registerer:          reg, // served at /metrics of the main listener
	})
	if err != nil {
		return nil, fmt.Errorf("coap: %w", err)
	}
	log.Info("CoAP serving", "dtls", gw.DTLSAddr().String(), "udp", fmt.Sprint(gw.UDPAddr()))
	fmt.Fprintf(out, "thingid CoAP gateway is serving on coaps://%s\n", gw.DTLSAddr())
	if a := gw.UDPAddr(); a != nil {
		fmt.Fprintf(out, "thingid CoAP gateway (no DTLS, local tools) is serving on coap://%s\n", a)
	}
	return gw.Close, nil
}

// aceResources are ACE's token, device authorization, revocation and
// introspection endpoints (internal/ace) on the CoAP gateway, at the same
// paths as on HTTPS, the client being the thing of the DTLS session's
// certificate or pre-shared key.
func aceResources(a *ace.Server) []coapgw.Resource {
	if a == nil {
		return nil
	}
	endpoint := func(f func(context.Context, []byte, ace.Identity) ([]byte, int)) coapgw.Handler {
		return coapgw.Endpoint(func(ctx context.Context, body []byte, s *coapgw.Session) ([]byte, int) {
			return f(ctx, body, aceIdentity(s))
		})
	}
	return []coapgw.Resource{
		{Path: ace.PathToken, Handler: endpoint(a.Token)},
		{Path: ace.PathDeviceAuthorization, Handler: endpoint(a.DeviceAuthorization)},
		{Path: ace.PathRevoke, Handler: endpoint(a.Revoke)},
		{Path: ace.PathIntrospect, Handler: endpoint(a.Introspect)},
	}
}

// aceAuthzInfo is the gateway's /authz-info on ACE's resource server: a
// token is accepted for the session that proved its cnf key.
func aceAuthzInfo(a *ace.Server) coapgw.AuthzInfoFunc {
	if a == nil {
		return nil
	}
	return func(ctx context.Context, token []byte, s *coapgw.Session) (*coapgw.Token, error) {
		acc, err := a.AuthzInfo(ctx, token, aceIdentity(s))
		if err != nil {
			return nil, err
		}
		return &coapgw.Token{ID: acc.ID, GrantID: acc.GrantID, Scopes: acc.Scopes, ExpiresAt: acc.ExpiresAt}, nil
	}
}

// aceIdentity is what a DTLS session's client proved, as ACE reads it.
func aceIdentity(s *coapgw.Session) ace.Identity {
	if s.PSKIdentity != "" {
		return ace.Identity{PSK: []byte(s.PSKIdentity), PSKThing: s.ThingID()}
	}
	return ace.Identity{Chain: s.Chain}
}

// coapBroker is the broker as the CoAP gateway's Publisher and
// Subscriber: what things post over CoAP is published, and what they
// observe subscribed, under the broker's topic rules for the thing; it
// tells the gateway which refusals are the thing's.
type coapBroker struct {
	b   *broker.Broker
	log *slog.Logger
}

func (c coapBroker) PublishAsThing(ctx context.Context, thing, cert, topic string, payload []byte, qos byte, contentType string) error {
	return c.refusal(c.b.PublishAsThing(tokenScopes(ctx), thing, cert, topic, payload, qos, contentType), thing, topic)
}

func (c coapBroker) SubscribeAsThing(ctx context.Context, thing, cert, filter string, deliver func(coapgw.Message), ended func(error)) (func(), error) {
	stop, err := c.b.SubscribeAsThing(tokenScopes(ctx), thing, cert, filter, func(d broker.Delivered) { deliver(coapgw.Message(d)) },
		func(why error) { ended(c.refusal(why, thing, filter)) })
	return stop, c.refusal(err, thing, filter)
}

func (c coapBroker) RetainedAsThing(ctx context.Context, thing, cert, topic string) (coapgw.Message, bool, error) {
	d, ok, err := c.b.RetainedAsThing(tokenScopes(ctx), thing, cert, topic)
	return coapgw.Message(d), ok, c.refusal(err, thing, topic)
}

// tokenScopes carries the scopes of the tokens the thing posted to the
// gateway's /authz-info to the broker, which grants them besides its rules.
func tokenScopes(ctx context.Context) context.Context {
	return broker.WithScopes(ctx, coapgw.TokenScopes(ctx))
}

// refusal is err as the gateway tells refusals apart; another error is
// logged.
func (c coapBroker) refusal(err error, thing, topic string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, broker.ErrTopic):
		return fmt.Errorf("%w: %v", coapgw.ErrBadTopic, err)
	case errors.Is(err, broker.ErrNotAllowed):
		return fmt.Errorf("%w: %v", coapgw.ErrForbidden, err)
	case errors.Is(err, broker.ErrInactive):
		return fmt.Errorf("%w: %v", coapgw.ErrInactive, err)
	}
	c.log.Error("coap: the broker failed a thing's request", "thing", thing, "topic", topic, "err", err)
	return err
}
