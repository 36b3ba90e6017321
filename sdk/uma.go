package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// UMA 2.0 wire identifiers (UMA 2.0 Grant §3.3.1) and thingid's claim token
// format for an access token that acts for the device's owner.
const (
	umaGrantType         = "urn:ietf:params:oauth:grant-type:uma-ticket"
	accessTokenClaimType = "urn:thingid:params:uma:claim-token-format:access_token"
)

// Errors of the UMA grant a device maker may want to tell apart; test with
// errors.Is on the *UMAError that UMAClient's requests fail with.
var (
	// ErrAccessRequested: nobody has shared the resource with the device's
	// owner yet; its owner has been asked (request_submitted). Try again
	// later, no sooner than UMAError.Interval.
	ErrAccessRequested = errors.New("sdk: the resource's owner has been asked to share it")
	// ErrAccessDenied: the resource's owner refused the request (request_denied).
	ErrAccessDenied = errors.New("sdk: the resource's owner refused to share it")
)

// UMAError is the authorization server's refusal to issue an RPT (UMA 2.0
// Grant §3.3.6).
type UMAError struct {
	// Code is the error code: request_submitted, request_denied, need_info,
	// invalid_grant, invalid_scope, ...
	Code        string `json:"error"`
	Description string `json:"error_description"`
	// Ticket continues the request (request_submitted, need_info).
	Ticket string `json:"ticket"`
	// Interval is how long to wait before asking again (request_submitted).
	Interval time.Duration `json:"-"`
	// RedirectUser tells that the requesting party must interact in a
	// browser (need_info with redirect_user), which a device cannot do.
	RedirectUser bool `json:"redirect_user"`
}

func (e *UMAError) Error() string {
	msg := "sdk: no RPT for the resource: " + e.Code
	if e.Description != "" {
		msg += ": " + e.Description
	}
	switch e.Code {
	case "request_submitted":
		msg += " (the owner has been asked; try again later)"
	case "need_info":
		msg += " (the device's owner must be known: use a token from Pair, which acts for the owner)"
	}
	return msg
}

// Unwrap makes ErrAccessRequested and ErrAccessDenied match.
func (e *UMAError) Unwrap() error {
	switch e.Code {
	case "request_submitted":
		return ErrAccessRequested
	case "request_denied":
		return ErrAccessDenied
	}
	return nil
}

// UMAClient sends requests to resource servers protected by UMA 2.0 (such
// as a service behind thingid's gateway that the owner's friend shares a
// playlist from) on behalf of the device's owner. A request that a resource
// server refuses with `401` and a `WWW-Authenticate: UMA` challenge naming
// this platform (as_uri) is answered by exchanging the challenge's
// permission ticket at the token endpoint for an RPT, presenting ts's
// current access token (which acts for the owner: a token from Pair) as the
// claim token, and sent once more with the RPT. RPTs are kept per resource
// server origin and upgraded (UMA 2.0 Grant §3.3.1 rpt) as more resources
// are granted; they are bound to the device's certificate or DPoP key like
// its other tokens. A refusal is a *UMAError (ErrAccessRequested,
// ErrAccessDenied). Challenges naming another authorization server are
// returned to the caller unanswered: the owner's token goes to this
// platform only.
func (c *Client) UMAClient(ts *TokenSource) *http.Client {
	return &http.Client{
		Transport: &umaTransport{c: c, ts: ts, base: c.http.Transport, rpts: map[string]*oauth2.Token{}},
		Timeout:   c.cfg.Timeout,
	}
}

type umaTransport struct {
	c    *Client
	ts   *TokenSource
	base http.RoundTripper

	mu   sync.Mutex
	rpts map[string]*oauth2.Token // by resource server origin
}

func (t *umaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	origin := req.URL.Scheme + "://" + req.URL.Host
	exchanged, dropped := false, false
	for attempt := 0; ; attempt++ {
		r, err := rewind(req, attempt)
		if err != nil {
			return nil, err
		}
		rpt := t.rpt(origin)
		if rpt != nil {
			setAuthorization(r, rpt)
		}
		resp, err := t.base.RoundTrip(r)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || exchanged || !canRewind(req) {
			return resp, err
		}
		asURI, ticket, ok := umaChallenge(resp.Header.Values("WWW-Authenticate"))
		if !ok || asURI != t.c.issuer() {
			return resp, nil
		}
		discard(resp)
		fresh, err := t.exchange(req.Context(), ticket, rpt)
		var ue *UMAError
		if rpt != nil && !dropped && errors.As(err, &ue) && ue.Code == "invalid_grant" {
			// The RPT cannot be upgraded (revoked, expired): ask again
			// without it, with a new ticket (the one sent is spent).
			t.forget(origin, rpt)
			dropped = true
			continue
		}
		if err != nil {
			closeBody(req)
			return nil, err
		}
		t.mu.Lock()
		t.rpts[origin] = fresh
		t.mu.Unlock()
		exchanged = true
	}
}

// forget drops the origin's RPT when it is still rpt.
func (t *umaTransport) forget(origin string, rpt *oauth2.Token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rpts[origin] == rpt {
		delete(t.rpts, origin)
	}
}

// rpt is the origin's RPT while it is valid.
func (t *umaTransport) rpt(origin string) *oauth2.Token {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tok := t.rpts[origin]; tok.Valid() {
		return tok
	}
	delete(t.rpts, origin)
	return nil
}

// exchange asks the token endpoint for an RPT for ticket, upgrading old.
func (t *umaTransport) exchange(ctx context.Context, ticket string, old *oauth2.Token) (*oauth2.Token, error) {
	claim, err := t.ts.TokenContext(ctx)
	if err != nil {
		return nil, err
	}
	m, err := t.c.Discover(ctx)
	if err != nil {
		return nil, err
	}
	form := url.Values{
		"grant_type":         {umaGrantType},
		"client_id":          {t.c.cfg.ClientID},
		"ticket":             {ticket},
		"claim_token":        {claim.AccessToken},
		"claim_token_format": {accessTokenClaimType},
	}
	if old != nil {
		form.Set("rpt", old.AccessToken)
	}
	endpoint := m.endpoint("token_endpoint", m.TokenEndpoint, t.c.currentCert() != nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: asking for an RPT: %w", explainTransport(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return nil, fmt.Errorf("sdk: asking for an RPT: %w", err)
	}
	return parseRPTAnswer(resp.StatusCode, body, time.Now())
}

// parseRPTAnswer reads the token endpoint's answer to the UMA grant: an RPT
// (§3.3.5) or a *UMAError (§3.3.6).
func parseRPTAnswer(status int, body []byte, now time.Time) (*oauth2.Token, error) {
	if status != http.StatusOK {
		var e struct {
			UMAError
			Interval json.Number `json:"interval"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
			return nil, fmt.Errorf("sdk: asking for an RPT: the platform answered %d without an OAuth error", status)
		}
		if n, err := e.Interval.Int64(); err == nil && n > 0 && n < 86400 {
			e.UMAError.Interval = time.Duration(n) * time.Second
		}
		return nil, &e.UMAError
	}
	var ok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &ok); err != nil || ok.AccessToken == "" {
		return nil, errors.New("sdk: asking for an RPT: the platform's answer has no access_token")
	}
	tok := &oauth2.Token{AccessToken: ok.AccessToken, TokenType: ok.TokenType}
	if ok.ExpiresIn > 0 {
		tok.Expiry = now.Add(time.Duration(ok.ExpiresIn) * time.Second)
	}
	return tok, nil
}

// setAuthorization presents tok as Bearer, or with the DPoP scheme when it
// is a DPoP token (the DPoP transport below adds the proof).
func setAuthorization(r *http.Request, tok *oauth2.Token) {
	scheme := "Bearer"
	if strings.EqualFold(tok.TokenType, "DPoP") {
		scheme = "DPoP"
	}
	r.Header.Set("Authorization", scheme+" "+tok.AccessToken)
}

// umaChallenge finds the UMA challenge among WWW-Authenticate values (RFC
// 9110 §11.6.1; UMA 2.0 Grant §3.2) and returns its as_uri and ticket.
func umaChallenge(values []string) (asURI, ticket string, ok bool) {
	for _, v := range values {
		for _, ch := range parseChallenges(v) {
			if strings.EqualFold(ch.scheme, "UMA") && ch.params["as_uri"] != "" && ch.params["ticket"] != "" {
				return ch.params["as_uri"], ch.params["ticket"], true
			}
		}
	}
	return "", "", false
}

type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges reads a WWW-Authenticate value: challenges of a scheme
// and comma-separated auth-params, each a token or a quoted-string (RFC
// 9110 §11.2). It stops at the first thing it cannot read, keeping what came
// before; token68 credentials are skipped.
func parseChallenges(v string) []challenge {
	var out []challenge
	var cur *challenge
	for {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			return out
		}
		name, rest := cutToken(v)
		if name == "" {
			return out
		}
		after := strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(after, "=") || cur == nil {
			// A new challenge: its scheme.
			out = append(out, challenge{scheme: name, params: map[string]string{}})
			cur = &out[len(out)-1]
			v = rest
			continue
		}
		after = strings.TrimLeft(after[1:], " \t")
		var val string
		if strings.HasPrefix(after, `"`) {
			var ok bool
			if val, rest, ok = cutQuoted(after); !ok {
				return out
			}
		} else if val, rest = cutToken(after); val == "" {
			// token68 ("abc==") after a scheme, or an empty value: skip
			// to the next comma.
			_, rest, _ = strings.Cut(after, ",")
		}
		if _, dup := cur.params[strings.ToLower(name)]; !dup && val != "" {
			cur.params[strings.ToLower(name)] = val
		}
		v = rest
	}
}

// cutToken splits off a leading RFC 9110 token.
func cutToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isTokenChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(c))
}

// cutQuoted splits off a leading quoted-string, unescaping it.
func cutQuoted(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}
