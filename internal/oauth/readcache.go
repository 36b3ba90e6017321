package oauth

import (
	"context"
	"sync"

	"github.com/thingid/thingid/internal/store"
)

// maxCachedEntries bounds readCache: past it, the cache starts over.
const maxCachedEntries = 10_000

// dataVersioner is a store that tells cheaply whether anything was committed
// since it gave a number, by any connection or process (SQLite's PRAGMA
// data_version, sqlstore.Store.DataVersion).
type dataVersioner interface {
	DataVersion(ctx context.Context) (uint64, error)
}

// readCache keeps the clients and own grants the token endpoint reads for
// every request, for as long as the database has not changed at all: one
// check of the data version per request instead of two reads. Any commit —
// a client deleted by the CLI in another process, a grant revoked, a thing
// disabled — empties it, so it never answers what the store would not.
// Stores without a data version (PostgreSQL) get no cache.
type readCache struct {
	version func(context.Context) (uint64, error)

	mu      sync.Mutex
	at      uint64 // the data version entries were read at
	entries map[cacheKey]any
}

func newReadCache(st store.Store) *readCache {
	dv, ok := st.(dataVersioner)
	if !ok {
		return nil
	}
	if _, err := dv.DataVersion(context.Background()); err != nil {
		return nil
	}
	return &readCache{version: dv.DataVersion}
}

type readVersionKey struct{}

// readVersion is the data version of one token request, asked once.
type readVersion struct {
	v          uint64
	ok, looked bool
}

// forRequest marks ctx as one request whose client and own-grant reads may
// come from the cache.
func (rc *readCache) forRequest(ctx context.Context) context.Context {
	if rc == nil {
		return ctx
	}
	return context.WithValue(ctx, readVersionKey{}, &readVersion{})
}

// current returns the request's data version, emptying the cache when the
// database changed; false outside forRequest or when the version is unknown.
func (rc *readCache) current(ctx context.Context) (uint64, bool) {
	rv, _ := ctx.Value(readVersionKey{}).(*readVersion)
	if rc == nil || rv == nil {
		return 0, false
	}
	if !rv.looked {
		rv.looked = true
		v, err := rc.version(ctx)
		if err != nil {
			return 0, false // read the store
		}
		rv.v, rv.ok = v, true
		rc.mu.Lock()
		if rc.at != v || rc.entries == nil {
			rc.at, rc.entries = v, map[cacheKey]any{}
		}
		rc.mu.Unlock()
	}
	return rv.v, rv.ok
}

// cacheKey names an entry: a client, or a client's own grant.
type cacheKey struct {
	ownGrant bool
	clientID string
}

// get returns the entry read at the request's data version, nil if none.
func (rc *readCache) get(ctx context.Context, k cacheKey) any {
	v, ok := rc.current(ctx)
	if !ok {
		return nil
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.at != v {
		return nil
	}
	return rc.entries[k]
}

// put keeps what the request read from the store after asking the version:
// should anything have been committed in between, the version the next
// request sees differs and the entry is never served.
func (rc *readCache) put(ctx context.Context, k cacheKey, x any) {
	v, ok := rc.current(ctx)
	if !ok {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.at != v {
		return
	}
	if len(rc.entries) >= maxCachedEntries {
		rc.entries = map[cacheKey]any{}
	}
	rc.entries[k] = x
}
