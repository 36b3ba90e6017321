package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// memoryLimiter keeps one GCRA timestamp per key, keyed by a seeded 64-bit
// hash (no key is stored), in shards. A full shard makes room from a sample
// of its keys: expired ones first (a key whose timestamp has passed is in
// the same state as an unknown key), else the one closest to expiry. So a
// million distinct keys cost at most maxKeys entries.
type memoryLimiter struct {
	seed   maphash.Seed
	per    int
	shards [limiterShards]limiterShard
}

const limiterShards = 256

type limiterShard struct {
	mu  sync.Mutex
	tat map[uint64]int64
	_   [48]byte // keep shards on their own cache lines
}

func newMemoryLimiter(maxKeys int) *memoryLimiter {
	m := &memoryLimiter{seed: maphash.MakeSeed(), per: max(1, maxKeys/limiterShards)}
	for i := range m.shards {
		m.shards[i].tat = map[uint64]int64{}
	}
	return m
}

func (m *memoryLimiter) allow(_ context.Context, key string, l limit, now time.Time) (decision, error) {
	h := maphash.String(m.seed, key)
	s := &m.shards[h%limiterShards]
	n := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, known := s.tat[h]
	next, d := gcra(tat, n, l)
	if d.Allowed {
		if !known && len(s.tat) >= m.per {
			s.evict(n)
		}
		s.tat[h] = next
	}
	return d, nil
}

// evict makes room for one key; s.mu is held.
func (s *limiterShard) evict(now int64) {
	var victim uint64
	soonest, i, freed := int64(0), 0, false
	for k, tat := range s.tat {
		if tat <= now {
			delete(s.tat, k)
			freed = true
		} else if soonest == 0 || tat < soonest {
			victim, soonest = k, tat
		}
		if i++; i == evictSample {
			break
		}
	}
	if !freed && soonest != 0 {
		delete(s.tat, victim)
	}
}

// redisLimiter keeps the timestamps in Redis, so that every gateway node
// counts against the same limits. The script runs atomically in Redis; the
// key expires a second after its timestamp passes (the second absorbs clock
// skew between nodes), which bounds Redis's memory the same way. Times are
// microseconds (Lua numbers are doubles); the clock is the gateway's, so
// nodes need synchronised clocks (NTP).
type redisLimiter struct {
	rdb redis.UniversalClient
}

// gcraScript is gcra in Lua. KEYS[1] the key; ARGV now, interval and
// tolerance in µs. Returns {allowed, remaining, retry after µs, reset µs}.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, 0, tat - tolerance - now, tat - now}
end
local nxt = tat + interval
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
return {1, math.floor((tolerance - (tat - now)) / interval), 0, nxt - now}
`)

func (r *redisLimiter) allow(ctx context.Context, key string, l limit, now time.Time) (decision, error) {
	sum := sha256.Sum256([]byte(key))
	k := "thingid:gw:" + hex.EncodeToString(sum[:16])
	us := func(d time.Duration) int64 { return int64(d / time.Microsecond) }
	res, err := gcraScript.Run(ctx, r.rdb, []string{k}, now.UnixMicro(), max(1, us(l.interval)), us(l.tolerance)).Int64Slice()
	if err != nil {
		return decision{}, fmt.Errorf("gateway: redis throttle: %w", err)
	}
	if len(res) != 4 {
		return decision{}, fmt.Errorf("gateway: redis throttle: unexpected answer %v", res)
	}
	return decision{
		Allowed:    res[0] == 1,
		Remaining:  int(res[1]),
		RetryAfter: time.Duration(res[2]) * time.Microsecond,
		Reset:      time.Duration(res[3]) * time.Microsecond,
	}, nil
}
