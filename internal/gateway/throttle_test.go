package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

const throttledRoutes = `
routes:
  - name: api
    match: {pathPrefix: /api}
    upstream: {url: UPSTREAM}
    filters:
      - oauth2
      - throttle:
          key: [thing, subject]
          groupBy: model
          rate: {requests: 5, per: 1s}
          groups:
            Thermo-2: {requests: 2, per: 1s, burst: 1}
  - name: open
    match: {pathPrefix: /open}
    upstream: {url: UPSTREAM}
    public: true
    filters:
      - throttle: {key: ["header:X-Api-Key", ip], rate: {requests: 3, per: 1m}}
`

func TestThrottleHeadersAndIsolation(t *testing.T) {
	e := newEnv(t, throttledRoutes)
	alice := e.token("")
	bob := e.token("", func(c *tokens.Claims) { c.Subject = "user-bob" })
	get := func(tok string) *http.Response {
		resp, _ := e.do(nil, http.MethodGet, "/api/x", "Authorization", "Bearer "+tok)
		return resp
	}
	for i := 4; i >= 0; i-- {
		resp := get(alice)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit-Policy") != `"api";q=5;w=1` || resp.Header.Get("RateLimit") != `"api";r=`+strconv.Itoa(i)+`;t=`+strconv.Itoa(1) {
			t.Fatalf("request with %d left: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	// Alice's flood is refused...
	for range 20 {
		resp, body := e.do(nil, http.MethodGet, "/api/x", "Authorization", "Bearer "+alice)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("RateLimit") != `"api";r=0;t=1` || problemOf(t, resp, body).Error != "throttled" {
			t.Fatalf("flood: %d %v %s", resp.StatusCode, resp.Header, body)
		}
	}
	// ...and does not touch Bob's budget.
	for range 5 {
		if resp := get(bob); resp.StatusCode != http.StatusOK {
			t.Fatalf("bob during alice's flood: %d", resp.StatusCode)
		}
	}
	e.clk.Add(time.Second)
	if resp := get(alice); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice a second later: %d", resp.StatusCode)
	}
	if n := e.counter("thingid_gateway_throttled_total", map[string]string{"route": "api"}); n != 20 {
		t.Errorf("throttled counted %v, want 20", n)
	}

	// The public route throttles by API key, else by address.
	for i := range 4 {
		resp, _ := e.do(nil, http.MethodGet, "/open/x", "X-Api-Key", "k1")
		if want := map[bool]int{true: 200, false: 429}[i < 3]; resp.StatusCode != want {
			t.Fatalf("key k1 request %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := e.do(nil, http.MethodGet, "/open/x", "X-Api-Key", "k2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("key k2: %d", resp.StatusCode)
	}
	if resp, _ := e.do(nil, http.MethodGet, "/open/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("by address: %d", resp.StatusCode)
	}
}

func TestThrottleGroupsByThingModel(t *testing.T) {
	e := newEnv(t, throttledRoutes)
	ids := identity.New(e.st, e.bus, password.Policy{})
	ctx := context.Background()
	mk := func(model, serial string) *store.Thing {
		th, err := ids.CreateThing(ctx, "test", &store.Thing{DisplayName: serial, Type: store.ThingDevice, Manufacturer: "Acme", Model: model, SerialNumber: serial, Status: store.StatusActive})
		if err != nil {
			t.Fatal(err)
		}
		return th
	}
	thermo, speaker := mk("Thermo-2", "T1"), mk("Speaker-1", "S1")
	tokFor := func(th *store.Thing) string {
		return e.token("", func(c *tokens.Claims) { c.ThingID, c.Subject = th.ID, th.ID })
	}
	allowed := func(tok string, n int) int {
		ok := 0
		for range n {
			if resp, _ := e.do(nil, http.MethodGet, "/api/x", "Authorization", "Bearer "+tok); resp.StatusCode == http.StatusOK {
				ok++
			}
		}
		return ok
	}
	if n := allowed(tokFor(thermo), 5); n != 1 {
		t.Errorf("Thermo-2 (burst 1): %d allowed of 5", n)
	}
	if n := allowed(tokFor(speaker), 8); n != 5 {
		t.Errorf("Speaker-1 (default, burst 5): %d allowed of 8", n)
	}
	// A model change is seen at once (the thing event drops the cached model).
	if _, err := ids.UpdateThing(ctx, "test", speaker.ID, speaker.Revision, func(th *store.Thing) error { th.Model = "Thermo-2"; return nil }); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Minute)
	if n := allowed(tokFor(speaker), 5); n != 1 {
		t.Errorf("after the model change: %d allowed of 5", n)
	}
}

// loadAccuracy drives n concurrent workers through allow for steps clock
// steps of step each, with more demand than supply at every step, and
// returns how many requests were allowed.
func loadAccuracy(t *testing.T, allow func(now time.Time) bool, steps int, step time.Duration, demand int) int {
	t.Helper()
	start := time.Unix(1_700_000_000, 0)
	var allowed atomic.Int64
	for s := 0; s <= steps; s++ {
		now := start.Add(time.Duration(s) * step)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range demand / 8 {
					if allow(now) {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	return int(allowed.Load())
}

func TestThrottleAccuracyUnderConcurrentLoad(t *testing.T) {
	l, err := rateSpec{Requests: 1000, Per: duration(time.Second), Burst: 100}.compile("rate")
	if err != nil {
		t.Fatal(err)
	}
	m := newMemoryLimiter(1 << 16)
	got := loadAccuracy(t, func(now time.Time) bool {
		d, _ := m.allow(context.Background(), "k", l, now)
		return d.Allowed
	}, 200, 10*time.Millisecond, 64)
	// 2 s at 1000/s after a burst of 100.
	assertWithin(t, got, 100+2000)
}

func assertWithin(t *testing.T, got, want int) {
	t.Helper()
	if diff := float64(got-want) / float64(want); diff > 0.01 || diff < -0.01 {
		t.Fatalf("allowed %d, want %d ± 1%%", got, want)
	}
	t.Logf("allowed %d for %d configured", got, want)
}

// Under a flood of a million distinct keys the counters stay bounded.
func TestThrottleMemoryBoundedUnderKeyChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("a million keys")
	}
	const maxKeys = 1 << 16
	m := newMemoryLimiter(maxKeys)
	l, _ := rateSpec{Requests: 10, Per: duration(time.Minute)}.compile("rate")
	now := time.Now()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 1_000_000 {
		if _, err := m.allow(context.Background(), "ip:"+strconv.Itoa(i), l, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.len(); n > maxKeys {
		t.Fatalf("%d counters kept for a limit of %d", n, maxKeys)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB for %d counters", grown>>20, maxKeys)
	}
	// The cap holds on the real gateway default too, at its size.
	if newMemoryLimiter(1_000_000).per*limiterShards > 1_000_000 {
		t.Fatal("the default cap is above a million keys")
	}
}

// startRedis runs Debian's redis-server on a free loopback port.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	needTool(t, "/usr/bin/redis-server", "redis-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("/usr/bin/redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--protected-mode", "yes")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { rdb.Close() })
	eventually(t, "redis-server answers", func() bool { return rdb.Ping(context.Background()).Err() == nil })
	return rdb
}

func TestRedisThrottleSharedByNodes(t *testing.T) {
	rdb := startRedis(t)
	l, err := rateSpec{Requests: 1000, Per: duration(time.Second), Burst: 100}.compile("rate")
	if err != nil {
		t.Fatal(err)
	}
	// Two gateway nodes, each with its own client, one Redis.
	nodes := []*redisLimiter{{rdb: rdb}, {rdb: redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})}}
	defer nodes[1].rdb.Close()
	var i atomic.Int64
	got := loadAccuracy(t, func(now time.Time) bool {
		d, err := nodes[i.Add(1)%2].allow(context.Background(), "route\x00\x00thing:t1", l, now)
		if err != nil {
			t.Error(err)
		}
		return d.Allowed
	}, 100, 10*time.Millisecond, 48)
	assertWithin(t, got, 100+1000)

	// A key expires when its bucket is full again: Redis memory is bounded.
	now := time.Now()
	if _, err := nodes[0].allow(context.Background(), "ttl-check", l, now); err != nil {
		t.Fatal(err)
	}
	keys, _ := rdb.Keys(context.Background(), "thingid:gw:*").Result()
	for _, k := range keys {
		if ttl := rdb.PTTL(context.Background(), k).Val(); ttl <= 0 || ttl > 3*time.Second {
			t.Errorf("key %s has TTL %v", k, ttl)
		}
	}
	// The decision matches the memory limiter's.
	m := newMemoryLimiter(1024)
	for step := range 5 {
		at := now.Add(time.Duration(step) * 3 * time.Millisecond)
		dm, _ := m.allow(context.Background(), "same", l, at)
		dr, _ := nodes[0].allow(context.Background(), "same", l, at)
		if dm.Allowed != dr.Allowed || dm.Remaining != dr.Remaining {
			t.Errorf("step %d: memory %+v, redis %+v", step, dm, dr)
		}
	}
}

func TestRedisThrottleThroughTheGateway(t *testing.T) {
	rdb := startRedis(t)
	e := newEnv(t, throttledRoutes, func(o *Options) { o.Redis = rdb })
	tok := e.token("")
	codes := map[int]int{}
	for range 8 {
		resp, _ := e.do(nil, http.MethodGet, "/api/x", "Authorization", "Bearer "+tok)
		codes[resp.StatusCode]++
	}
	if codes[200] != 5 || codes[429] != 3 {
		t.Fatalf("answers %v, want 5×200 and 3×429", codes)
	}
	// Without Redis the gateway lets requests through (and says so).
	rdb.Close()
	if resp, body := e.do(nil, http.MethodGet, "/api/x", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("redis down: %d %s", resp.StatusCode, body)
	}
	if n := e.counter("thingid_gateway_throttle_errors_total", nil); n != 1 {
		t.Errorf("throttle errors counted %v", n)
	}
}

// len is how many counters m keeps.
func (m *memoryLimiter) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
