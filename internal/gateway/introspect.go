package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/tokens"
)

// IntrospectionOptions configures the RFC 7662 client for tokens the gateway
// cannot validate locally.
type IntrospectionOptions struct {
	// URL of the introspection endpoint.
	URL string
	// ClientID and ClientSecret authenticate the gateway (client_secret_basic).
	ClientID, ClientSecret string
	// CacheTTL caps how long an answer is reused (never past the token's
	// exp); default 1 min.
	CacheTTL time.Duration
	// CacheSize bounds the answers kept; default 16384.
	CacheSize int
	// Client makes the calls; nil for one with a 10 s timeout.
	Client *http.Client
}

// introspector asks the endpoint, remembering answers (active or not) and
// holding the number of calls in flight.
type introspector struct {
	opts  IntrospectionOptions
	cache *tokenCache
	sem   chan struct{}
	now   func() time.Time
}

// maxIntrospections in flight: a burst of unknown tokens queues instead of
// hammering the authorization server.
const maxIntrospections = 32

func newIntrospector(o IntrospectionOptions, now func() time.Time) (*introspector, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("gateway: introspection URL %q is not an http(s) URL", o.URL)
	}
	if o.ClientID == "" || o.ClientSecret == "" {
		return nil, errors.New("gateway: introspection needs a client id and secret (RFC 7662 §2.1)")
	}
	o.CacheTTL = cmp.Or(o.CacheTTL, time.Minute)
	if o.Client == nil {
		o.Client = &http.Client{Timeout: maxLookup}
	}
	return &introspector{opts: o, cache: newTokenCache(cmp.Or(o.CacheSize, 16384)), sem: make(chan struct{}, maxIntrospections), now: now}, nil
}

// introspection is the RFC 7662 §2.2 response, with thingid's gid and thing.
type introspection struct {
	Active    bool                 `json:"active"`
	Scope     string               `json:"scope"`
	ClientID  string               `json:"client_id"`
	Subject   string               `json:"sub"`
	ExpiresAt int64                `json:"exp"`
	IssuedAt  int64                `json:"iat"`
	NotBefore int64                `json:"nbf"`
	Issuer    string               `json:"iss"`
	Audience  audience             `json:"aud"`
	ID        string               `json:"jti"`
	Cnf       *tokens.Confirmation `json:"cnf"`
	GrantID   string               `json:"gid"`
	ThingID   string               `json:"thing"`
}

// audience is aud: one string or an array (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

var errInactive = &refusedToken{desc: "the token is not active"}

// lookup returns what the endpoint says of token raw for audience.
func (in *introspector) lookup(ctx context.Context, raw, aud string) (*principal, error) {
	now := in.now()
	k := cacheKey("introspection", aud, raw)
	if id, ok := in.cache.get(k, now); ok {
		if id == nil {
			return nil, errInactive
		}
		return id, nil
	}
	started := time.Now()
	select {
	case in.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	resp, err := in.call(ctx, raw)
	<-in.sem
	if err != nil {
		return nil, &Denial{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Reason: "introspection_error",
			Detail: "the token cannot be checked now; try again later"}
	}
	cl, rerr := claimsOf(resp, aud, now)
	if rerr != nil {
		in.cache.put(k, nil, now.Add(in.opts.CacheTTL), "", now, started)
		return nil, rerr
	}
	id := newPrincipal(cl)
	until := now.Add(in.opts.CacheTTL)
	if cl.ExpiresAt.Before(until) {
		until = cl.ExpiresAt
	}
	in.cache.put(k, id, until, cl.GrantID, now, started)
	return id, nil
}

// call posts the token to the endpoint (RFC 7662 §2.1).
func (in *introspector) call(ctx context.Context, raw string) (*introspection, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.opts.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(in.opts.ClientID), url.QueryEscape(in.opts.ClientSecret))
	resp, err := in.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway: introspection: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("gateway: introspection endpoint answered %s", resp.Status)
	}
	var out introspection
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return nil, fmt.Errorf("gateway: introspection answer: %w", err)
	}
	return &out, nil
}

// claimsOf checks an answer: active, current, for aud, with printable
// identities; a token refused is nil claims with the reason.
func claimsOf(in *introspection, aud string, now time.Time) (*tokens.Claims, error) {
	refuse := func(d string) (*tokens.Claims, error) { return nil, &refusedToken{desc: d} }
	switch {
	case !in.Active:
		return nil, errInactive
	case in.ExpiresAt == 0:
		return refuse("the introspected token has no expiry")
	case !now.Before(time.Unix(in.ExpiresAt, 0)):
		return refuse("the introspected token has expired")
	case in.NotBefore != 0 && now.Before(time.Unix(in.NotBefore, 0)):
		return refuse("the introspected token is not valid yet")
	case !slices.Contains(in.Audience, aud):
		return refuse("the introspected token is not for this audience")
	case in.Subject == "" && in.ClientID == "":
		return refuse("the introspected token names neither subject nor client")
	}
	for _, v := range []string{in.Subject, in.ClientID, in.Scope, in.ThingID, in.GrantID} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return refuse("the introspection answer has control characters")
		}
	}
	sub := cmp.Or(in.Subject, in.ClientID)
	cl := &tokens.Claims{
		Issuer: in.Issuer, Subject: sub, Audience: in.Audience, ClientID: in.ClientID, Scope: strings.Fields(in.Scope),
		ExpiresAt: time.Unix(in.ExpiresAt, 0), ID: in.ID, GrantID: in.GrantID, Confirmation: in.Cnf, ThingID: in.ThingID,
	}
	if in.IssuedAt != 0 {
		cl.IssuedAt = time.Unix(in.IssuedAt, 0)
	}
	return cl, nil
}
