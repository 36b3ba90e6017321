package gateway

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/tokens"
)

// cache is a bounded map from a hash to a value that expires. When a shard is
// full, a few entries are sampled and the expired ones, or else the one
// closest to expiry, make room: memory stays bounded whatever the churn.
type cache[V any] struct {
	shards []cacheShard[V]
	per    int // entries per shard; 0 disables the cache
}

type cacheShard[V any] struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v   V
	exp time.Time
	gid string // the grant of a token, dropped with it on revocation
}

const (
	cacheShards = 64
	// evictSample entries are looked at to make room in a full shard.
	evictSample = 16
)

func newCache[V any](size int) *cache[V] {
	c := &cache[V]{shards: make([]cacheShard[V], cacheShards)}
	if size > 0 {
		c.per = max(1, size/cacheShards)
	}
	for i := range c.shards {
		c.shards[i].m = map[[sha256.Size]byte]cacheEntry[V]{}
	}
	return c
}

// cacheKey hashes parts, separated so that ("ab","c") is not ("a","bc");
// keys of the usual size are built on the stack.
func cacheKey(parts ...string) [sha256.Size]byte {
	var buf [2048]byte
	b := buf[:0]
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return sha256.Sum256(b)
}

func (c *cache[V]) shard(k [sha256.Size]byte) *cacheShard[V] {
	return &c.shards[int(k[0])%cacheShards]
}

// get returns the live value of k.
func (c *cache[V]) get(k [sha256.Size]byte, now time.Time) (V, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v under k until exp.
func (c *cache[V]) put(k [sha256.Size]byte, v V, exp time.Time, gid string, now time.Time) {
	if c.per == 0 || !now.Before(exp) {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.per {
		s.evict(now)
	}
	s.m[k] = cacheEntry[V]{v: v, exp: exp, gid: gid}
}

// evict makes room from a sample of the shard (map iteration starts at a
// random place); s.mu is held.
func (s *cacheShard[V]) evict(now time.Time) {
	var victim [sha256.Size]byte
	var soonest time.Time
	n, freed := 0, false
	for k, e := range s.m {
		if !now.Before(e.exp) {
			delete(s.m, k)
			freed = true
		} else if soonest.IsZero() || e.exp.Before(soonest) {
			victim, soonest = k, e.exp
		}
		if n++; n == evictSample {
			break
		}
	}
	if !freed && !soonest.IsZero() {
		delete(s.m, victim)
	}
}

func (c *cache[V]) delete(k [sha256.Size]byte) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// clear deletes every entry.
func (c *cache[V]) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}

// dropGrant deletes every entry of grant gid.
func (c *cache[V]) dropGrant(gid string) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.gid == gid {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// tokenCache remembers what tokens were found to say (nil: refused),
// so that a token is verified once and not on every request. A revocation
// drops the grant's entries at once; and since the Verifier and the cache
// hear of it separately, a verification that raced the revocation must not
// put its (stale) answer back: answers of a grant revoked in the last
// revokeGuard are refused, and so are answers that took longer than
// maxLookup, which would outlive the guard.
type tokenCache struct {
	c      *cache[*principal]
	mu     sync.RWMutex
	recent map[string]time.Time // revoked grant → when (monotonic)
}

const (
	revokeGuard = time.Minute
	maxLookup   = 10 * time.Second
)

func newTokenCache(size int) *tokenCache {
	return &tokenCache{c: newCache[*principal](size), recent: map[string]time.Time{}}
}

func (t *tokenCache) get(k [sha256.Size]byte, now time.Time) (*principal, bool) {
	return t.c.get(k, now)
}

// put stores what a lookup that started at started (time.Now) found about
// token k, until exp.
func (t *tokenCache) put(k [sha256.Size]byte, id *principal, exp time.Time, gid string, now, started time.Time) {
	if time.Since(started) > maxLookup {
		return
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if _, revoked := t.recent[gid]; revoked && gid != "" {
		return
	}
	t.c.put(k, id, exp, gid, now)
}

// revoke drops the entries of grant gid and refuses late answers about it.
func (t *tokenCache) revoke(gid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := time.Now()
	for g, when := range t.recent {
		if at.Sub(when) > revokeGuard {
			delete(t.recent, g)
		}
	}
	t.recent[gid] = at
	t.c.dropGrant(gid)
}

// principal is what a verified token says, with the values of its identity
// headers made once: they are shared by every request with the token and
// never modified.
type principal struct {
	claims                        *tokens.Claims
	subject, client, thing, scope []string
	// perms are an RPT's permissions; nil for other tokens (and for a
	// permissions claim that does not parse: no RPT).
	perms []heldPermission
}

// heldPermission is one permission of an RPT, with its header values.
type heldPermission struct {
	tokens.Permission
	resource, scopes []string
}

func newPrincipal(cl *tokens.Claims) *principal {
	id := &principal{claims: cl, subject: []string{cl.Subject}, client: []string{cl.ClientID}, scope: []string{strings.Join(cl.Scope, " ")}}
	if cl.ThingID != "" {
		id.thing = []string{cl.ThingID}
	}
	if len(cl.Permissions) > 0 {
		ps, _ := tokens.ParsePermissions(cl.Permissions)
		for _, p := range ps {
			id.perms = append(id.perms, heldPermission{Permission: p, resource: []string{p.ResourceID}, scopes: []string{strings.Join(p.Scopes, " ")}})
		}
	}
	return id
}

// permitted returns the RPT's permission for resource that grants every
// scope of need and has not expired at now (unix seconds); nil when none
// does. Permissions are not combined: the authorization server issues one
// per resource (an upgrade merges them).
func (id *principal) permitted(resource string, need []string, now int64) *heldPermission {
	for i := range id.perms {
		p := &id.perms[i]
		if p.ResourceID == resource && (p.ExpiresAt == 0 || now < p.ExpiresAt) && hasAll(p.Scopes, need) {
			return p
		}
	}
	return nil
}
