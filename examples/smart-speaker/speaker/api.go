package speaker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxRetryAfter bounds how long a Retry-After can make the speaker wait.
const maxRetryAfter = time.Hour

// apiResult is what one request through the gateway came to.
type apiResult struct {
	status     int
	retryAfter time.Duration // with 429
	body       []byte        // the first 64 KiB
	challenge  string        // WWW-Authenticate with 401 and 403
}

// callAPI sends GET GatewayURL+APIPath with the speaker's access token over
// mutual TLS: the token is bound to the certificate (RFC 8705), so the
// connection must present it.
func (s *speaker) callAPI(ctx context.Context, tok *oauth2.Token) (*apiResult, error) {
	u := strings.TrimSuffix(s.cfg.GatewayURL, "/") + s.cfg.APIPath
	r, err := s.get(ctx, s.dev.PlatformClient(), u, tok) // the device certificate, no token of its own
	if err != nil {
		return nil, fmt.Errorf("calling the cloud API at %s: %w", u, err)
	}
	return r, nil
}

// get sends GET u with hc, over mutual TLS with the device certificate, and
// with tok if not nil.
func (s *speaker) get(ctx context.Context, hc *http.Client, u string, tok *oauth2.Token) (*apiResult, error) {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if tok != nil {
		req.Header.Set("Authorization", tok.Type()+" "+tok.AccessToken)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	r := &apiResult{status: resp.StatusCode, body: body, challenge: resp.Header.Get("WWW-Authenticate")}
	if resp.StatusCode == http.StatusTooManyRequests {
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return r, nil
}

// parseRetryAfter reads Retry-After (RFC 9110 §10.2.3): delay-seconds or an
// HTTP-date. Missing or unreadable is 0; it is capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
