package ace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/tokens"
)

// AuthorizationServer is the platform's authorization server (oauth.Server,
// adapted in server): the same client authentication, grants, scopes,
// audiences and device flow as its HTTPS endpoints, on a request's
// parameters as the form would carry them, the client authenticated by
// what id proved. Its errors are *Error.
type AuthorizationServer interface {
	// Token answers a token request, the access token signed by sign.
	Token(ctx context.Context, form url.Values, id Identity, sign func(tokens.Claims) ([]byte, error)) (*Answer, error)
	// DeviceAuthorization starts the device flow (RFC 8628 §3.1).
	DeviceAuthorization(ctx context.Context, form url.Values, id Identity) (*DeviceAnswer, error)
	// Introspector authenticates the client of an introspection request
	// (client_id and client_secret in form, or what id proved) as the token
	// endpoint authenticates its clients (RFC 9200 §5.9.1), and returns its
	// id; an *Error (invalid_client, 401) when it did not authenticate or
	// may not introspect at all (a public client, a thing).
	Introspector(ctx context.Context, form url.Values, id Identity) (clientID string, err error)
	// Disclose is the introspection rule the platform's HTTPS endpoint
	// follows too: the audiences client caller may learn of an active token
	// issued to tokenClient for aud, false when the token is to be answered
	// inactive to it (neither its own nor of an audience it is a resource
	// server of).
	Disclose(caller, tokenClient string, aud []string) ([]string, bool)
}

// Answer is a granted token request.
type Answer struct {
	AccessToken  []byte
	RefreshToken string // "" unless the grant issues one
	ExpiresIn    int64  // seconds
	Scope        string // the granted scopes, space-separated
}

// DeviceAnswer is a device authorization response (RFC 8628 §3.2).
type DeviceAnswer struct {
	DeviceCode, UserCode, VerificationURI, VerificationURIComplete string
	ExpiresIn, Interval                                            int64 // seconds
}

// Revocations is the deny set of access tokens (tokens.Verifier): a CWT is
// refused when its grant is, exactly as a JWT of the same grant.
type Revocations interface {
	Revoked(gid string) bool
	Leeway() time.Duration
}

// Options configure a Server; every field but Logger and Registerer is required.
type Options struct {
	// Issuer is the platform's issuer identifier, iss of every CWT.
	Issuer string
	// Audience is the resource server's: the CWTs the token endpoint issues
	// are for it unless the request names another (audience, 5), and
	// AuthzInfo accepts only CWTs for it.
	Audience    string
	Keys        Keys
	Revocations Revocations
	AS          AuthorizationServer
	// Store keeps the CWTs revoked by cti and the audit records of CWTs
	// issued and revoked; Bus carries revocations (EventRevoke) between the
	// nodes and to the doors that hold tokens.
	Store  Store
	Bus    *events.Bus
	Logger *slog.Logger
	// Registerer registers thingid_ace_requests_total; nil for none.
	Registerer prometheus.Registerer
}

// Server is ACE's authorization server and resource server side.
type Server struct {
	issuer, audience string
	keys             Keys
	revocations      Revocations
	as               AuthorizationServer
	st               Store
	bus              *events.Bus
	ctis             revokedCTIs
	stop             func()
	log              *slog.Logger
	metrics          *metrics
}

// New returns a Server following the revocations of CWTs until Close.
func New(o Options) (*Server, error) {
	if o.Issuer == "" || o.Audience == "" || o.Keys == nil || o.Revocations == nil || o.AS == nil || o.Store == nil || o.Bus == nil {
		return nil, errors.New("ace: Issuer, Audience, Keys, Revocations, AS, Store and Bus are required")
	}
	s := &Server{issuer: o.Issuer, audience: o.Audience, keys: o.Keys, revocations: o.Revocations, as: o.AS,
		st: o.Store, bus: o.Bus, ctis: revokedCTIs{until: map[string]time.Time{}},
		log: cmp.Or(o.Logger, slog.Default()), metrics: newMetrics(o.Registerer)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop, err := s.follow(ctx, o.Bus)
	if err != nil {
		return nil, fmt.Errorf("ace: reading the revoked CWTs: %w", err)
	}
	s.stop = stop
	return s, nil
}

// Close stops following revocations.
func (s *Server) Close() { s.stop() }
