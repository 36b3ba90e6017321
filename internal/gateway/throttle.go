package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/tokens"
)

// throttleFilter limits the rate of requests per key (GCRA, the token bucket
// as one timestamp per key). The key is read from the request (the token's
// subject, client, thing or thing model, the client address, a header); the
// rate is the default, or the one of the request's group (for example one
// per thing model). Answers carry the RateLimit-Policy and RateLimit fields
// of draft-ietf-httpapi-ratelimit-headers (-08 and later); a refusal is 429
// with Retry-After (RFC 9110 §10.2.3).
type throttleFilter struct {
	g *Gateway
	// policy names the limit in RateLimit fields and namespaces the keys.
	policy  string
	key     []keySource
	groupBy keySource
	def     limit
	groups  map[string]limit
}

type throttleConfig struct {
	// Key lists where the key comes from; the first non-empty wins, and the
	// client address if none.
	Key []string `json:"key"`
	// GroupBy picks the group whose rate applies; none: the default.
	GroupBy string `json:"groupBy"`
	// Rate is the default rate; Groups the rate of each group.
	Rate   rateSpec            `json:"rate"`
	Groups map[string]rateSpec `json:"groups"`
}

type rateSpec struct {
	Requests int      `json:"requests"`
	Per      duration `json:"per"`
	// Burst is how many requests may come at once; default Requests.
	Burst int `json:"burst"`
}

// limit is a compiled rate: GCRA's emission interval (one request per
// interval) and burst tolerance.
type limit struct {
	requests  int
	per       time.Duration
	burst     int
	interval  time.Duration
	tolerance time.Duration
	// policy is the RateLimit-Policy value, made once.
	policy []string
}

func (s rateSpec) compile(field string) (limit, error) {
	per := time.Duration(s.Per)
	switch {
	case s.Requests < 1 || s.Requests > 1_000_000_000:
		return limit{}, fmt.Errorf("%s.requests: a whole number from 1", field)
	case per < time.Second || per%time.Second != 0 || per > 24*time.Hour:
		return limit{}, fmt.Errorf("%s.per: whole seconds from 1s to 24h (RateLimit-Policy windows are in seconds)", field)
	case s.Burst < 0:
		return limit{}, fmt.Errorf("%s.burst: must not be negative", field)
	}
	l := limit{requests: s.Requests, per: per, burst: s.Burst}
	if l.burst == 0 {
		l.burst = s.Requests
	}
	l.interval = per / time.Duration(s.Requests)
	if l.interval <= 0 {
		return limit{}, fmt.Errorf("%s: more than one request per nanosecond", field)
	}
	l.tolerance = time.Duration(l.burst-1) * l.interval
	return l, nil
}

func newThrottleFilter(g *Gateway, r *route, raw json.RawMessage, authenticated bool) (Filter, error) {
	var c throttleConfig
	if err := decodeConfig(raw, &c); err != nil {
		return nil, err
	}
	f := &throttleFilter{g: g, policy: r.name, groups: map[string]limit{}}
	if len(c.Key) == 0 {
		return nil, errors.New("key: required, e.g. [thing, client] (subject, client, thing, model, ip or header:Name)")
	}
	for _, k := range c.Key {
		src, err := parseKeySource(k, authenticated)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		f.key = append(f.key, src)
	}
	if c.GroupBy != "" {
		src, err := parseKeySource(c.GroupBy, authenticated)
		if err != nil {
			return nil, fmt.Errorf("groupBy: %w", err)
		}
		f.groupBy = src
	}
	var err error
	if f.def, err = c.Rate.compile("rate"); err != nil {
		return nil, err
	}
	f.def.policy = []string{policyValue(f.policy, f.def)}
	if len(c.Groups) > 0 && f.groupBy.kind == "" {
		return nil, errors.New("groups: set groupBy to say what a group is")
	}
	for name, s := range c.Groups {
		l, err := s.compile("groups." + name)
		if err != nil {
			return nil, err
		}
		l.policy = []string{policyValue(f.policy, l)}
		f.groups[name] = l
	}
	return f, nil
}

// keySource says where a key (or a group) comes from.
type keySource struct {
	kind   string // subject, client, thing, model, ip, header
	header string
}

func parseKeySource(s string, authenticated bool) (keySource, error) {
	if name, ok := strings.CutPrefix(s, "header:"); ok {
		if name == "" || strings.ContainsAny(name, " :\t") {
			return keySource{}, fmt.Errorf("%q: header:Name needs a header name", s)
		}
		if strings.HasPrefix(strings.ToLower(name), "x-thingid-") {
			return keySource{}, fmt.Errorf("%q: identity headers are the gateway's; use subject, client or thing", s)
		}
		return keySource{kind: "header", header: http.CanonicalHeaderKey(name)}, nil
	}
	switch s {
	case "ip":
		return keySource{kind: s}, nil
	case "subject", "client", "thing", "model":
		if !authenticated {
			return keySource{}, fmt.Errorf("%q comes from the token: put the oauth2 or uma filter before throttle", s)
		}
		return keySource{kind: s}, nil
	}
	return keySource{}, fmt.Errorf("%q is not subject, client, thing, model, ip or header:Name", s)
}

// value reads the source from the request; "" when it has none.
func (k keySource) value(g *Gateway, r *http.Request, x *exchange) string {
	var cl *tokens.Claims
	if x.id != nil {
		cl = x.id.claims
	}
	switch k.kind {
	case "ip":
		return g.clientIP(r)
	case "header":
		return r.Header.Get(k.header)
	case "":
		return ""
	}
	if cl == nil {
		return ""
	}
	switch k.kind {
	case "subject":
		return cl.Subject
	case "client":
		return cl.ClientID
	case "thing":
		return cl.ThingID
	}
	return g.thingModel(r.Context(), cl.ThingID)
}

// thingModel is the model of a thing, cached; "" when unknown.
func (g *Gateway) thingModel(ctx context.Context, id string) string {
	if id == "" || g.opts.Things == nil {
		return ""
	}
	now := g.now()
	k := cacheKey("thing", id)
	if m, ok := g.models.get(k, now); ok {
		return m
	}
	t, err := g.opts.Things.GetThing(ctx, id)
	if err != nil {
		// Unknown or unreadable: the default rate applies, and we ask again next time.
		g.log.Debug("gateway: thing model unknown", "thing", id, "err", err)
		return ""
	}
	g.models.put(k, t.Model, now.Add(time.Minute), "", now)
	return t.Model
}

func (f *throttleFilter) Handle(w http.ResponseWriter, r *http.Request, next http.Handler) error {
	x := exchangeOf(r)
	kind, key := "ip", ""
	for _, src := range f.key {
		if key = src.value(f.g, r, x); key != "" {
			kind = src.kind
			break
		}
	}
	if key == "" {
		key = f.g.clientIP(r)
	}
	lim, group := f.def, ""
	if f.groupBy.kind != "" {
		if g := f.groupBy.value(f.g, r, x); g != "" {
			if l, ok := f.groups[g]; ok {
				lim, group = l, g
			}
		}
	}
	d, err := f.g.limiter.allow(r.Context(), f.policy+"\x00"+group+"\x00"+kind+":"+key, lim, f.g.now())
	if err != nil {
		// Fail open: the counters are a protection, not the gate; a
		// missing Redis must not take every API down.
		f.g.metrics.limiterErrors.Inc()
		if last := f.g.limiterWarned.Load(); time.Since(time.Unix(0, last)) > 10*time.Second && f.g.limiterWarned.CompareAndSwap(last, time.Now().UnixNano()) {
			f.g.log.Warn("gateway: throttle counters unavailable; requests let through (logged every 10 s at most)", "route", f.policy, "err", err)
		}
		next.ServeHTTP(w, r)
		return nil
	}
	h := w.Header()
	h["Ratelimit-Policy"] = lim.policy
	// RateLimit: "name";r=remaining;t=seconds until the bucket is full.
	var buf [128]byte // on the stack; a longer name makes append allocate
	b := append(append(append(buf[:0], '"'), f.policy...), `";r=`...)
	b = append(strconv.AppendInt(b, int64(d.Remaining), 10), ";t="...)
	h["Ratelimit"] = []string{string(strconv.AppendInt(b, int64(ceilSeconds(d.Reset)), 10))}
	if !d.Allowed {
		h.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
		return &Denial{Status: http.StatusTooManyRequests, Code: "throttled", Reason: "throttled",
			Detail: "too many requests; retry after the time in Retry-After"}
	}
	next.ServeHTTP(w, r)
	return nil
}

// policyValue is RateLimit-Policy: "name";q=quota;w=window in seconds.
func policyValue(name string, l limit) string {
	return `"` + name + `";q=` + strconv.Itoa(l.requests) + ";w=" + strconv.Itoa(int(l.per/time.Second))
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// limiter keeps GCRA counters: in memory (one node) or in Redis (shared).
type limiter interface {
	// allow counts one request of key under l at now.
	allow(ctx context.Context, key string, l limit, now time.Time) (decision, error)
}

// decision is the outcome of one request against a limit.
type decision struct {
	Allowed bool
	// Remaining requests that may come at once after this one.
	Remaining int
	// RetryAfter is when a refused request would be allowed; Reset when the
	// key's bucket is full again.
	RetryAfter, Reset time.Duration
}

// gcra applies one request at now to a key whose theoretical arrival time
// is tat (ns; 0 for a new key) and returns the new tat. A request conforms
// when tat is at most tolerance ahead of now.
func gcra(tat, now int64, l limit) (int64, decision) {
	tat = max(tat, now)
	iv, tol := int64(l.interval), int64(l.tolerance)
	if tat-now > tol {
		return tat, decision{RetryAfter: time.Duration(tat - tol - now), Reset: time.Duration(tat - now)}
	}
	next := tat + iv
	return next, decision{Allowed: true, Remaining: int((tol - (tat - now)) / iv), Reset: time.Duration(next - now)}
}

var _ Filter = (*throttleFilter)(nil)
