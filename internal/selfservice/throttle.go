package selfservice

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// throttle keeps one token bucket per key (a client address; an account or
// an address asked for) and forgets the least recently seen key when it
// tracks too many, so memory stays bounded however many keys an attacker
// uses. With shared set, it counts in the store instead, so that every node
// of one database counts a key together.
type throttle[K comparable] struct {
	limit  rate.Limit
	burst  int
	max    int
	shared Attempts
	log    *slog.Logger

	mu      sync.Mutex
	clients map[K]*list.Element // value: *client[K]
	lru     list.List           // front: most recently seen
}

type client[K comparable] struct {
	key     K
	limiter *rate.Limiter
}

func newThrottle[K comparable](perMinute float64, burst, maxClients int) *throttle[K] {
	if perMinute == 0 {
		perMinute = 6
	}
	if burst == 0 {
		burst = 5
	}
	if maxClients == 0 {
		maxClients = 10000
	}
	return &throttle[K]{limit: rate.Limit(perMinute / 60), burst: burst, max: maxClients, clients: map[K]*list.Element{}}
}

// sharedWindow is the window of the attempts counted in the store.
const sharedWindow = time.Minute

// allowShared counts an attempt in the store: at most burst + the rate's
// attempts in a minute. A store that does not answer lets the attempt
// through (logged): the request itself needs the store, and fails then.
func (t *throttle[K]) allowShared(ctx context.Context, key K, now time.Time) (bool, time.Duration) {
	n, since, err := t.shared.AddFailure(ctx, "selfservice:"+fmt.Sprint(key), now, sharedWindow)
	if err != nil {
		t.log.Error("selfservice: counting an attempt", "err", err)
		return true, 0
	}
	if n > t.burst+int(math.Ceil(float64(t.limit)*60)) {
		return false, max(time.Second, since.Add(sharedWindow).Sub(now))
	}
	return true, 0
}

// allow takes a token from the key's bucket; when there is none it returns
// how long until there will be one.
func (t *throttle[K]) allow(key K, now time.Time) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var c *client[K]
	if e, ok := t.clients[key]; ok {
		t.lru.MoveToFront(e)
		c = e.Value.(*client[K])
	} else {
		if t.lru.Len() >= t.max {
			oldest := t.lru.Back()
			t.lru.Remove(oldest)
			delete(t.clients, oldest.Value.(*client[K]).key)
		}
		c = &client[K]{key: key, limiter: rate.NewLimiter(t.limit, t.burst)}
		t.clients[key] = t.lru.PushFront(c)
	}
	r := c.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// wrap refuses requests over the client's rate with tooMany.
func wrap(t *throttle[netip.Prefix], next http.Handler, tooMany func(w http.ResponseWriter, r *http.Request, retryAfter int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allow := t.allow
		if t.shared != nil {
			allow = func(key netip.Prefix, now time.Time) (bool, time.Duration) {
				return t.allowShared(r.Context(), key, now)
			}
		}
		if ok, wait := allow(clientKey(r), time.Now()); !ok {
			// RFC 9110 §10.2.3: Retry-After in whole seconds, rounded up.
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			tooMany(w, r, secs)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientKey is the client's IPv4 address or IPv6 /64 (one subscriber usually
// holds a whole /64). It trusts no forwarding header: behind a reverse proxy the
// proxy's address is throttled, so put the proxy's own limits in front.
func clientKey(r *http.Request) netip.Prefix {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{} // all unparseable peers share one bucket
	}
	addr := ap.Addr().Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}
