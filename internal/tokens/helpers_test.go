package tokens

import (
	"context"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

const (
	testIssuer   = "https://id.example.com"
	testAudience = "https://api.example.com"
)

// quiet drops the logs of the damage the tests do on purpose.
var quiet = slog.New(slog.DiscardHandler)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memStore is an in-memory KeyStore with the semantics of sqlstore. When
// gate is set, the first two ListSigningKeys calls wait for each other, so
// that two managers see an empty store at the same moment.
type memStore struct {
	mu    sync.Mutex
	keys  []*store.SigningKey
	gate  *sync.WaitGroup
	gated int
}

func (m *memStore) CreateSigningKey(_ context.Context, k *store.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.keys {
		if x.KID == k.KID {
			return store.ErrConflict
		}
	}
	c := *k
	m.keys = append(m.keys, &c)
	return nil
}

func (m *memStore) ListSigningKeys(context.Context) ([]*store.SigningKey, error) {
	m.mu.Lock()
	out := make([]*store.SigningKey, len(m.keys))
	for i, k := range m.keys {
		c := *k
		out[i] = &c
	}
	gated := m.gate != nil && m.gated < 2
	if gated {
		m.gated++
	}
	m.mu.Unlock()
	if gated {
		m.gate.Done()
		m.gate.Wait()
	}
	return out, nil
}

func (m *memStore) RetireSigningKey(_ context.Context, kid string, at, exp time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys {
		if k.KID == kid {
			if k.RetiredAt.IsZero() {
				k.RetiredAt = at
			}
			k.ExpiresAt = exp
			return nil
		}
	}
	return store.ErrNotFound
}

func masterKey() secrets.Key {
	var k secrets.Key
	rand.Read(k[:])
	return k
}

// sqliteStore opens a fresh SQLite store and its file path.
func sqliteStore(t testing.TB) (store.Store, string) {
	path := filepath.Join(t.TempDir(), "thingid.db")
	st, err := sqliteOpen(t, path)
	if err != nil {
		t.Fatal(err)
	}
	return st, path
}

// sqliteOpen opens the store at path, as another node would.
func sqliteOpen(t testing.TB, path string) (store.Store, error) {
	st, err := sqlite.Open(path)
	if err == nil {
		t.Cleanup(func() { st.Close() })
	}
	return st, err
}

// env is one node: keys, issuer and verifier on a shared store, bus and clock.
type env struct {
	keys *Keys
	is   *Issuer
	v    *Verifier
}

func newEnv(t testing.TB, st KeyStore, mk secrets.Key, bus *events.Bus, clk *clock, alg string) *env {
	t.Helper()
	k, err := NewKeys(context.Background(), st, KeysConfig{MasterKey: mk, Alg: alg, Bus: bus, Now: clk.Now, MaxTokenLifetime: time.Hour, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	is, err := NewIssuer(k, testIssuer)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(k, VerifierConfig{Issuer: testIssuer, Bus: bus, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &env{keys: k, is: is, v: v}
}

// newTestEnv is one ES256 node on a memStore.
func newTestEnv(t testing.TB) (*env, *clock, *events.Bus) {
	clk, bus := newClock(), events.New()
	return newEnv(t, &memStore{}, masterKey(), bus, clk, ""), clk, bus
}

// accessClaims are valid claims issued at now.
func accessClaims(now time.Time) Claims {
	return Claims{
		Subject:   "user-1",
		Audience:  []string{testAudience},
		ClientID:  "client-1",
		Scope:     []string{"openid", "playlist:read"},
		ExpiresAt: now.Add(10 * time.Minute),
		GrantID:   "grant-1",
		AuthTime:  now.Add(-time.Minute),
		ThingID:   "thing-1",
	}
}

func (e *env) accessToken(t testing.TB, c Claims) string {
	t.Helper()
	tok, err := e.is.AccessToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) kids() []string {
	var kids []string
	for kid := range e.keys.current().published {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	return kids
}

func (e *env) signingKID() string { return e.keys.current().signing.kid }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting: %s", what)
}

// size is the number of grants the deny set remembers.
func (d *denySet) size() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.until)
}
