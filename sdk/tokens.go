package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// refreshAt is the part of a token's lifetime after which a new one is
// fetched, so that a request never leaves with a token about to expire.
const refreshAt = 0.8

// TokenSource hands out an access token of the device, fetching a new one
// when four fifths of its lifetime have passed or when the device
// certificate it was bound to has been renewed. It is an oauth2.TokenSource
// and safe for concurrent use.
type TokenSource struct {
	c     *Client
	fetch func(ctx context.Context, old *oauth2.Token) (*oauth2.Token, error)

	mu        sync.Mutex
	tok       *oauth2.Token
	got       time.Time // when tok arrived
	gen       int       // the certificate generation tok was bound to
	onRefresh func(*oauth2.Token)
}

// Token returns a valid token; it is TokenContext without a deadline of
// its own (the Client's Timeout still bounds each request).
func (ts *TokenSource) Token() (*oauth2.Token, error) { return ts.TokenContext(context.Background()) }

// TokenContext returns a valid token, fetching a new one when needed.
func (ts *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != nil && ts.fresh(time.Now()) {
		return ts.tok, nil
	}
	tok, err := ts.fetch(ctx, ts.tok)
	if err != nil {
		return nil, err
	}
	ts.set(tok)
	if ts.onRefresh != nil {
		ts.onRefresh(tok)
	}
	return tok, nil
}

// OnRefresh calls fn with every new token, so that a device can save the
// rotated refresh token of a paired device (see Client.Resume).
func (ts *TokenSource) OnRefresh(fn func(*oauth2.Token)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.onRefresh = fn
}

func (ts *TokenSource) set(tok *oauth2.Token) {
	ts.tok, ts.got, ts.gen = tok, time.Now(), ts.c.generation()
}

func (ts *TokenSource) fresh(now time.Time) bool {
	if ts.gen != ts.c.generation() || !ts.tok.Valid() {
		return false
	}
	if ts.tok.Expiry.IsZero() {
		return true
	}
	life := ts.tok.Expiry.Sub(ts.got)
	return now.Before(ts.got.Add(time.Duration(float64(life) * refreshAt)))
}

// invalidate forgets tok's access token when it is still the current token:
// a resource refused it before its time (revoked, or the platform's keys
// rotated). The refresh token is kept: the next fetch refreshes with it, and
// learns from the platform whether the grant still stands.
func (ts *TokenSource) invalidate(tok *oauth2.Token) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok == tok {
		ts.tok = &oauth2.Token{RefreshToken: tok.RefreshToken}
	}
}

// CallHome gets the device's own access token: the client credentials
// grant, the device authenticating with its certificate over mutual TLS
// (tls_client_auth, RFC 8705 §2.1), so that the token is bound to the
// certificate (cnf x5t#S256, RFC 8705 §3). The first token is fetched now,
// so that a problem shows at once; later ones come when needed. Before
// each fetch the certificate is renewed if it is due (Config.RenewAfter).
func (c *Client) CallHome(ctx context.Context) (*TokenSource, error) {
	if c.currentCert() == nil {
		return nil, errors.New("sdk: calling home needs the device certificate: set Config.CertFile and Config.KeyFile")
	}
	ts := &TokenSource{c: c, fetch: c.clientCredentials}
	if _, err := ts.TokenContext(ctx); err != nil {
		return nil, err
	}
	return ts, nil
}

func (c *Client) clientCredentials(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
	if err := c.autoRenew(ctx); err != nil {
		return nil, err
	}
	m, err := c.Discover(ctx)
	if err != nil {
		return nil, err
	}
	cc := clientcredentials.Config{
		ClientID:  c.cfg.ClientID,
		TokenURL:  m.endpoint("token_endpoint", m.TokenEndpoint, true),
		Scopes:    c.cfg.Scopes,
		AuthStyle: oauth2.AuthStyleInParams, // client_id only: the certificate authenticates
	}
	tok, err := cc.Token(c.oauthContext(ctx))
	if err != nil {
		return nil, c.explainOAuth("calling home", err)
	}
	return tok, nil
}

// Resume continues with a token the device got earlier, typically from
// Pair and saved across a restart: it is refreshed with its refresh token
// when needed.
func (c *Client) Resume(tok *oauth2.Token) *TokenSource {
	ts := &TokenSource{c: c, fetch: c.refresh}
	ts.set(tok)
	return ts
}

func (c *Client) refresh(ctx context.Context, old *oauth2.Token) (*oauth2.Token, error) {
	if old == nil || old.RefreshToken == "" {
		return nil, errors.New("sdk: the access token expired and there is no refresh token: pair the device again")
	}
	if err := c.autoRenew(ctx); err != nil {
		return nil, err
	}
	m, err := c.Discover(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := c.oauthConfig(m).TokenSource(c.oauthContext(ctx), &oauth2.Token{RefreshToken: old.RefreshToken}).Token()
	if err != nil {
		return nil, c.explainOAuth("refreshing the token", err)
	}
	return tok, nil
}

// oauthConfig describes the device as a client of golang.org/x/oauth2.
func (c *Client) oauthConfig(m *Metadata) *oauth2.Config {
	mtls := c.currentCert() != nil
	return &oauth2.Config{
		ClientID: c.cfg.ClientID,
		Scopes:   c.cfg.Scopes,
		Endpoint: oauth2.Endpoint{
			TokenURL:      m.endpoint("token_endpoint", m.TokenEndpoint, mtls),
			DeviceAuthURL: m.endpoint("device_authorization_endpoint", m.DeviceAuthorizationEndpoint, mtls),
			AuthStyle:     oauth2.AuthStyleInParams,
		},
	}
}

// oauthContext makes golang.org/x/oauth2 send through the SDK's client
// (mutual TLS, DPoP).
func (c *Client) oauthContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// HTTPClient sends requests with the current access token of ts: as a
// Bearer token, or with the DPoP scheme and a proof over the token (RFC
// 9449 §7.1) when the platform issued a DPoP token. It uses the device
// certificate too, to which call-home tokens are bound. A request refused
// with invalid_token is retried once with a new token.
func (c *Client) HTTPClient(ts *TokenSource) *http.Client {
	return &http.Client{Transport: &authTransport{ts: ts, base: c.http.Transport}, Timeout: c.cfg.Timeout}
}

type authTransport struct {
	ts   *TokenSource
	base http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := t.ts.TokenContext(req.Context())
		if err != nil {
			closeBody(req)
			return nil, err
		}
		r, err := rewind(req, attempt)
		if err != nil {
			return nil, err
		}
		scheme := "Bearer"
		if strings.EqualFold(tok.TokenType, "DPoP") {
			scheme = "DPoP"
		}
		r.Header.Set("Authorization", scheme+" "+tok.AccessToken)
		resp, err := t.base.RoundTrip(r)
		if err != nil || attempt > 0 || resp.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) || !canRewind(req) {
			return resp, err
		}
		discard(resp)
		t.ts.invalidate(tok)
	}
}

// rewind is req for another attempt: a clone, with a fresh body after the first.
func rewind(req *http.Request, attempt int) (*http.Request, error) {
	r := req.Clone(req.Context())
	if attempt > 0 && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("sdk: resending the request body: %w", err)
		}
		r.Body = body
	}
	return r, nil
}

func canRewind(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
