package authn

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"
)

// Brute-force defence, with every count in store.Counters so that all nodes
// share it (NIST SP 800-63B §5.2.2 "Rate Limiting (Throttling)"; OWASP
// Authentication Cheat Sheet):
//
//   - per account: after FreeFailures failures within FailureWindow, each
//     further attempt waits 2^(n-FreeFailures) seconds after the last failure,
//     at most MaxBackoff. The account is named by the user name as typed
//     (normalized), not by a user ID, so a name nobody has backs off exactly
//     like a real one and the answers cannot tell them apart.
//   - per client address (IPv4, or IPv6 /64): a token bucket of IPBurst
//     attempts refilled at IPAttemptsPerMinute.

// ipWindow is how long an address's attempt count lives; within it an address
// may make IPBurst + rate·elapsed attempts.
const ipWindow = 15 * time.Minute

func (s *Sessions) counterName(kind, v string) string {
	m := hmac.New(sha256.New, s.counterKey)
	m.Write([]byte(v))
	// Keyed hash: the counters table holds no user names or addresses, and its
	// keys have a fixed length whatever was typed.
	return "signin:" + kind + ":" + hex.EncodeToString(m.Sum(nil)[:16])
}

// accountKey normalizes a typed user name the way the identity service and the
// store compare them (NFKC, trimmed, case-insensitive).
func accountKey(name string) string {
	return strings.ToLower(strings.TrimSpace(norm.NFKC.String(name)))
}

// allowIP takes one attempt from the address's bucket. The bucket is a counter
// whose window started at `since`: it holds IPBurst attempts at the start and
// gains rate·elapsed more. Attempts refused still count, so hammering only
// pushes the next allowed attempt further out (never past the window's end).
func (s *Sessions) allowIP(ctx context.Context, client netip.Addr, now time.Time) (wait time.Duration, err error) {
	n, since, err := s.st.AddFailure(ctx, s.counterName("ip", addrPrefix(client).String()), now, ipWindow)
	if err != nil {
		return 0, fmt.Errorf("counting the attempt: %w", err)
	}
	rate := s.opts.IPAttemptsPerMinute / 60 // per second
	elapsed := now.Sub(since).Seconds()
	if float64(n) <= float64(s.opts.IPBurst)+rate*elapsed {
		return 0, nil
	}
	// The next attempt (n+1) fits when burst + rate·t >= n+1.
	next := since.Add(time.Duration(float64(n+1-s.opts.IPBurst) / rate * float64(time.Second)))
	return min(next.Sub(now), since.Add(ipWindow).Sub(now)), nil
}

// backoff is the wait after n failures.
func (s *Sessions) backoff(n int) time.Duration {
	e := n - s.opts.FreeFailures
	if e < 0 {
		return 0
	}
	if e > 30 {
		return s.opts.MaxBackoff
	}
	return min(time.Duration(1<<e)*time.Second, s.opts.MaxBackoff)
}

// accountWait returns how long the account must still wait before an attempt.
func (s *Sessions) accountWait(ctx context.Context, acct string, now time.Time) (time.Duration, error) {
	n, _, err := s.st.GetFailures(ctx, s.counterName("acct", acct), now, s.opts.FailureWindow)
	if err != nil || n < s.opts.FreeFailures {
		return 0, err
	}
	// The "last" counter is restarted on every failure, so its window start
	// is the time of the last failure.
	_, last, err := s.st.GetFailures(ctx, s.counterName("last", acct), now, s.opts.FailureWindow)
	if err != nil || last.IsZero() {
		return 0, err
	}
	return max(0, last.Add(s.backoff(n)).Sub(now)), nil
}

// failed records a failed attempt and returns the wait before the next one.
func (s *Sessions) failed(ctx context.Context, acct string, now time.Time) (time.Duration, error) {
	n, _, err := s.st.AddFailure(ctx, s.counterName("acct", acct), now, s.opts.FailureWindow)
	if err != nil {
		return 0, err
	}
	last := s.counterName("last", acct)
	if err := s.st.ResetFailures(ctx, last); err != nil {
		return 0, err
	}
	if _, _, err := s.st.AddFailure(ctx, last, now, s.opts.FailureWindow); err != nil {
		return 0, err
	}
	return s.backoff(n), nil
}

// succeeded forgets the account's failures.
func (s *Sessions) succeeded(ctx context.Context, acct string) error {
	if err := s.st.ResetFailures(ctx, s.counterName("acct", acct)); err != nil {
		return err
	}
	return s.st.ResetFailures(ctx, s.counterName("last", acct))
}

// retryAfter sets Retry-After in whole seconds, rounded up (RFC 9110 §10.2.3).
func retryAfter(w http.ResponseWriter, d time.Duration) int {
	if d <= 0 {
		return 0
	}
	secs := int(math.Ceil(d.Seconds()))
	w.Header().Set("Retry-After", fmt.Sprint(secs))
	return secs
}

// clientPrefix is the client's IPv4 address or IPv6 /64 (one subscriber
// usually holds a whole /64). It trusts no forwarding header: behind a reverse
// proxy the proxy's address is throttled, so put the proxy's limits in front.
func clientPrefix(r *http.Request) netip.Prefix { return addrPrefix(clientAddr(r)) }

// addrPrefix is what throttling counts of an address: the IPv4 address or
// the IPv6 /64; all invalid addresses share one bucket.
func addrPrefix(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// clientAddr is the request's peer address; the zero Addr when unparseable.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientIP is the peer address recorded with a session.
func clientIP(r *http.Request) string { return addrString(clientAddr(r)) }

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
