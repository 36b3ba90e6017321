package selfservice

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestThrottleOverHTTP(t *testing.T) {
	opts := testOptions()
	opts.RatePerMinute, opts.Burst = 1, 2
	e := newBareEnv(t, opts)
	// Malformed bodies still count as attempts and never reach the identity service.
	for i := range 2 {
		if resp, body := e.postJSON(t, `{`); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("attempt %d: %d %s, want 400", i+1, resp.StatusCode, body)
		}
	}
	resp, body := e.postJSON(t, `{`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third attempt: %d, want 429", resp.StatusCode)
	}
	decodeProblem(t, resp, body)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("Retry-After = %q, want 1..60 seconds", resp.Header.Get("Retry-After"))
	}
	// The form shares the client's bucket and answers with a page.
	resp, page := e.postForm(t, url.Values{"userName": {"x"}})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(page, "Too many attempts") {
		t.Fatalf("form: %d, want 429 with Retry-After and a page:\n%s", resp.StatusCode, page)
	}
	// Reading the form is not an attempt.
	if resp, _ := e.get(t, "/register"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /register while throttled: %d, want 200", resp.StatusCode)
	}
}

func TestThrottleBuckets(t *testing.T) {
	now := time.Now()
	th := newThrottle[netip.Prefix](60, 1, 3) // one per second, no burst, at most 3 clients
	a := netip.MustParsePrefix("192.0.2.1/32")
	b := netip.MustParsePrefix("192.0.2.2/32")
	if ok, _ := th.allow(a, now); !ok {
		t.Fatal("first attempt refused")
	}
	if ok, wait := th.allow(a, now); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("second attempt at once: ok=%v wait=%v, want refused for up to 1s", ok, wait)
	}
	if ok, _ := th.allow(b, now); !ok {
		t.Fatal("another client is throttled by the first one")
	}
	if ok, _ := th.allow(a, now.Add(time.Second)); !ok {
		t.Fatal("refused after the bucket refilled")
	}
	// Memory stays bounded however many clients come.
	for i := range 1000 {
		th.allow(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32), now)
	}
	if len(th.clients) != 3 || th.lru.Len() != 3 {
		t.Fatalf("tracking %d clients (%d in LRU), want at most 3", len(th.clients), th.lru.Len())
	}
}

func TestClientKey(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5555":                     "192.0.2.7/32",
		"[::ffff:192.0.2.7]:5555":            "192.0.2.7/32",
		"[2001:db8:1:2:aaaa::1]:443":         "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb:cccc:dddd:1]:80": "2001:db8:1:2::/64",
	} {
		r := &http.Request{RemoteAddr: remote}
		if got := clientKey(r).String(); got != want {
			t.Errorf("clientKey(%s) = %s, want %s", remote, got, want)
		}
	}
}
