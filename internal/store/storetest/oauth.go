package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// OAuth runs the conformance suite of store.OAuth; open returns a fresh, empty
// store for each subtest.
func OAuth(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Clients", testClients},
		{"Grants", testGrants},
		{"Standing", testStanding},
		{"RefreshTokens", testRefreshTokens},
		{"ConcurrentRefresh", testConcurrentRefresh},
		{"AuthCodes", testAuthCodes},
		{"ConcurrentAuthCodes", testConcurrentAuthCodes},
		{"DeviceCodes", testDeviceCodes},
		{"ConcurrentDeviceUpdates", testConcurrentDeviceUpdates},
		{"ConcurrentDeviceCreates", testConcurrentDeviceCreates},
		{"Consents", testConsents},
		{"OAuthWithTx", testOAuthWithTx},
		{"DeleteIdentityRevokesNothing", testDeleteIdentityRevokesNothing},
		{"Sessions", testSessions},
		{"SigningKeys", testSigningKeys},
		{"Counters", testCounters},
		{"ConcurrentFailures", testConcurrentFailures},
		{"Replay", testReplay},
		{"ConcurrentReplay", testConcurrentReplay},
		{"PurgeExpired", testPurgeExpired},
		{"PasswordResets", testPasswordResets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// hashOf stands for the keyed hash the callers compute.
func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// base is a fixed, microsecond-aligned time for the tests that pass times in.
var base = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// race runs fn n times at once and returns the errors.
func race(n int, fn func(i int) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// exactlyOnce checks that one of errs is nil and all others are want.
func exactlyOnce(t *testing.T, errs []error, want error) {
	t.Helper()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, want):
			t.Fatalf("want nil or %v, got %v", want, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent uses succeeded, want exactly 1", ok, len(errs))
	}
}

func testSessions(t *testing.T, s store.Store) {
	later := time.Now().Add(time.Hour)
	sess := &store.Session{
		Hash: hashOf("cookie-1"), UserID: "u1", AuthTime: time.Now().Add(-time.Minute),
		ExpiresAt: later, RemoteIP: "192.0.2.1", UserAgent: "Firefox",
	}
	must(t, s.CreateSession(ctx(t), sess))
	if sess.Created.IsZero() || sess.Created.Location() != time.UTC || sess.Created.Nanosecond()%1000 != 0 {
		t.Fatalf("Created not set to UTC microseconds: %v", sess.Created)
	}
	got, err := s.GetSession(ctx(t), hashOf("cookie-1"))
	must(t, err)
	if !reflect.DeepEqual(got, sess) {
		t.Fatalf("GetSession:\n got %+v\nwant %+v", got, sess)
	}
	wantErr(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("cookie-1"), UserID: "u2", ExpiresAt: later}), store.ErrConflict)
	// A bad input is refused with the field named, never stored with a silent default.
	for name, bad := range map[string]*store.Session{
		"empty hash": {UserID: "u1", ExpiresAt: later},
		"no expiry":  {Hash: hashOf("x"), UserID: "u1"},
		"no user":    {Hash: hashOf("x"), ExpiresAt: later},
	} {
		if err := s.CreateSession(ctx(t), bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	_, err = s.GetSession(ctx(t), hashOf("nope"))
	wantErr(t, err, store.ErrNotFound)

	// Expired is not found, by every door.
	must(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("old"), UserID: "u1", ExpiresAt: time.Now().Add(-time.Second)}))
	_, err = s.GetSession(ctx(t), hashOf("old"))
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.TouchSession(ctx(t), hashOf("old"), time.Now()), store.ErrNotFound)

	// Touch moves LastSeen forward only.
	t1 := time.Now().Add(time.Minute).Truncate(time.Microsecond).UTC()
	must(t, s.TouchSession(ctx(t), sess.Hash, t1))
	must(t, s.TouchSession(ctx(t), sess.Hash, t1.Add(-time.Second)))
	got, err = s.GetSession(ctx(t), sess.Hash)
	must(t, err)
	if !got.LastSeen.Equal(t1) {
		t.Fatalf("LastSeen %v, want %v", got.LastSeen, t1)
	}
	wantErr(t, s.TouchSession(ctx(t), hashOf("nope"), t1), store.ErrNotFound)

	must(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("cookie-2"), UserID: "u1", ExpiresAt: later}))
	must(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("cookie-3"), UserID: "u2", ExpiresAt: later}))
	list, err := s.ListSessions(ctx(t), "u1")
	must(t, err)
	if len(list) != 2 || !bytes.Equal(list[0].Hash, sess.Hash) || !bytes.Equal(list[1].Hash, hashOf("cookie-2")) {
		t.Fatalf("ListSessions(u1): %d sessions, want cookie-1 and cookie-2 (not the expired one)", len(list))
	}

	must(t, s.DeleteSession(ctx(t), sess.Hash))
	wantErr(t, s.DeleteSession(ctx(t), sess.Hash), store.ErrNotFound)
	_, err = s.GetSession(ctx(t), sess.Hash)
	wantErr(t, err, store.ErrNotFound)

	must(t, s.DeleteUserSessions(ctx(t), "u1"))
	must(t, s.DeleteUserSessions(ctx(t), "u1")) // nothing left is fine
	list, err = s.ListSessions(ctx(t), "u1")
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("%d sessions of u1 after DeleteUserSessions", len(list))
	}
	if _, err := s.GetSession(ctx(t), hashOf("cookie-3")); err != nil {
		t.Fatalf("another user's session went too: %v", err)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	// The public JWK comes back byte for byte (the JWKS is served from it).
	k1 := &store.SigningKey{KID: "k1", Alg: "ES256", Sealed: []byte{0, 1, 2, 255},
		Public: json.RawMessage(`{"kty":"EC", "crv":"P-256", "x":"AA", "y":"BB", "kid":"k1"}`), Created: base}
	k2 := &store.SigningKey{KID: "k2", Alg: "EdDSA", Sealed: []byte("sealed-2"),
		Public: json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"CC","kid":"k2"}`), Created: base.Add(time.Hour)}
	must(t, s.CreateSigningKey(ctx(t), k2))
	must(t, s.CreateSigningKey(ctx(t), k1))
	wantErr(t, s.CreateSigningKey(ctx(t), &store.SigningKey{KID: "k1", Alg: "ES256", Sealed: []byte("x"), Public: json.RawMessage(`{}`)}), store.ErrConflict)
	for name, bad := range map[string]*store.SigningKey{
		"no kid":      {Alg: "ES256", Sealed: []byte("x"), Public: json.RawMessage(`{}`)},
		"no alg":      {KID: "k9", Sealed: []byte("x"), Public: json.RawMessage(`{}`)},
		"not sealed":  {KID: "k9", Alg: "ES256", Public: json.RawMessage(`{}`)},
		"bad public":  {KID: "k9", Alg: "ES256", Sealed: []byte("x"), Public: json.RawMessage(`{`)},
		"none public": {KID: "k9", Alg: "ES256", Sealed: []byte("x")},
	} {
		if err := s.CreateSigningKey(ctx(t), bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	keys, err := s.ListSigningKeys(ctx(t))
	must(t, err)
	if len(keys) != 2 || !reflect.DeepEqual(keys[0], k1) || !reflect.DeepEqual(keys[1], k2) {
		t.Fatalf("ListSigningKeys, oldest first:\n got %+v\nwant %+v %+v", keys, k1, k2)
	}

	retired, expires := base.Add(2*time.Hour), base.Add(3*time.Hour)
	must(t, s.RetireSigningKey(ctx(t), "k1", retired, expires))
	// Retiring again (another node rotating) keeps the first RetiredAt.
	must(t, s.RetireSigningKey(ctx(t), "k1", retired.Add(time.Minute), expires.Add(time.Minute)))
	wantErr(t, s.RetireSigningKey(ctx(t), "nope", retired, expires), store.ErrNotFound)
	keys, err = s.ListSigningKeys(ctx(t))
	must(t, err)
	if !keys[0].RetiredAt.Equal(retired) || !keys[0].ExpiresAt.Equal(expires.Add(time.Minute)) {
		t.Fatalf("k1 retired %v expires %v, want %v and %v", keys[0].RetiredAt, keys[0].ExpiresAt, retired, expires.Add(time.Minute))
	}
	if !keys[1].RetiredAt.IsZero() || !keys[1].ExpiresAt.IsZero() {
		t.Fatalf("k2 changed: %+v", keys[1])
	}
}

func testCounters(t *testing.T, s store.Store) {
	const w = 10 * time.Minute
	type step struct {
		op        string // add, get, reset
		key       string
		at        time.Duration // after base
		wantCount int
		wantSince time.Duration // after base; -1: zero time
	}
	steps := []step{
		{"get", "acct:alice", 0, 0, -1},
		{"add", "acct:alice", 0, 1, 0},
		{"add", "acct:alice", time.Minute, 2, 0},
		{"add", "ip:192.0.2.1", time.Minute, 1, time.Minute},
		{"get", "acct:alice", 2 * time.Minute, 2, 0},
		{"add", "acct:alice", w - time.Microsecond, 3, 0},
		// The window of the first failure passed: the count starts again.
		{"get", "acct:alice", w, 0, -1},
		{"add", "acct:alice", w, 1, w},
		{"get", "acct:alice", w + time.Second, 1, w},
		{"get", "ip:192.0.2.1", w, 1, time.Minute},
		{"reset", "acct:alice", 0, 0, 0},
		{"get", "acct:alice", w + time.Second, 0, -1},
		{"reset", "acct:nobody", 0, 0, 0},
		{"add", "acct:alice", w + 2*time.Second, 1, w + 2*time.Second},
	}
	for i, st := range steps {
		var (
			n     int
			since time.Time
			err   error
		)
		at := base.Add(st.at)
		switch st.op {
		case "add":
			n, since, err = s.AddFailure(ctx(t), st.key, at, w)
		case "get":
			n, since, err = s.GetFailures(ctx(t), st.key, at, w)
		case "reset":
			must(t, s.ResetFailures(ctx(t), st.key))
			continue
		}
		must(t, err)
		wantSince := time.Time{}
		if st.wantSince >= 0 {
			wantSince = base.Add(st.wantSince)
		}
		if n != st.wantCount || !since.Equal(wantSince) {
			t.Fatalf("step %d %s %s at +%v: got %d since %v, want %d since %v", i, st.op, st.key, st.at, n, since, st.wantCount, wantSince)
		}
	}
}

func testConcurrentFailures(t *testing.T, s store.Store) {
	const n = 20
	counts := make([]int, n)
	for _, err := range race(n, func(i int) error {
		c, _, err := s.AddFailure(ctx(t), "acct:bob", base.Add(time.Duration(i)*time.Millisecond), time.Hour)
		counts[i] = c
		return err
	}) {
		must(t, err)
	}
	got, _, err := s.GetFailures(ctx(t), "acct:bob", base.Add(time.Second), time.Hour)
	must(t, err)
	if got != n {
		t.Fatalf("%d concurrent failures counted %d", n, got)
	}
	// Every caller saw a distinct count: no two read the same old value.
	seen := map[int]bool{}
	for _, c := range counts {
		if seen[c] || c < 1 || c > n {
			t.Fatalf("counts returned to concurrent callers: %v", counts)
		}
		seen[c] = true
	}
}

func testReplay(t *testing.T, s store.Store) {
	later := time.Now().Add(time.Minute)
	must(t, s.UseOnce(ctx(t), "dpop:jti-1", later))
	wantErr(t, s.UseOnce(ctx(t), "dpop:jti-1", later), store.ErrUsed)
	must(t, s.UseOnce(ctx(t), "client-assertion:jti-1", later)) // keys are the caller's namespace
	// An expired record no longer blocks: the identifier's own expiry protects
	// the caller from then on.
	must(t, s.UseOnce(ctx(t), "dpop:jti-2", time.Now().Add(-time.Second)))
	must(t, s.UseOnce(ctx(t), "dpop:jti-2", later))
	wantErr(t, s.UseOnce(ctx(t), "dpop:jti-2", later), store.ErrUsed)
	if err := s.UseOnce(ctx(t), "", later); err == nil {
		t.Error("empty key accepted")
	}
	if err := s.UseOnce(ctx(t), "dpop:jti-3", time.Time{}); err == nil {
		t.Error("zero expiry accepted")
	}
}

func testConcurrentReplay(t *testing.T, s store.Store) {
	later := time.Now().Add(time.Minute)
	exactlyOnce(t, race(20, func(int) error { return s.UseOnce(ctx(t), "jti-race", later) }), store.ErrUsed)
	// Also when the racers take over an expired record.
	must(t, s.UseOnce(ctx(t), "jti-expired", time.Now().Add(-time.Second)))
	exactlyOnce(t, race(20, func(int) error { return s.UseOnce(ctx(t), "jti-expired", later) }), store.ErrUsed)
	// A backend may record single uses made outside a transaction on a
	// connection of their own: inside and outside see one set of records.
	exactlyOnce(t, race(20, func(i int) error {
		if i%2 == 0 {
			return s.UseOnce(ctx(t), "jti-mixed", later)
		}
		return s.WithTx(ctx(t), func(tx store.Tx) error { return tx.UseOnce(ctx(t), "jti-mixed", later) })
	}), store.ErrUsed)
}

func testClients(t *testing.T, s store.Store) {
	c := &store.Client{
		Name: "Speaker app", Type: store.ClientConfidential, SecretHash: hashOf("secret"),
		TokenEndpointAuthMethod: "client_secret_basic",
		RedirectURIs:            []string{"https://app.example/cb", "http://127.0.0.1/cb"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		Scopes:                  []string{"openid", "playlists:read"},
		Resources:               []string{"https://id.example", "urn:thingid:mqtt"},
		DefaultResources:        []string{"urn:thingid:mqtt"},
		// Kept byte for byte, whitespace included.
		JWKS:    []byte(`{"keys": [ {"kty":"EC","crv":"P-256","x":"AA","y":"BB"} ]}`),
		ThingID: "thing-1",
	}
	before := time.Now().Add(-time.Second)
	must(t, s.CreateClient(ctx(t), c))
	if c.ID == "" || c.Revision != 1 || c.Created.Before(before) || !c.Created.Equal(c.Modified) || c.Created.Location() != time.UTC {
		t.Fatalf("meta not set on create: %+v", c.Meta)
	}
	got, err := s.GetClient(ctx(t), c.ID)
	must(t, err)
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("GetClient:\n got %+v\nwant %+v", got, c)
	}
	// A public client with a chosen client_id and nothing optional.
	pub := &store.Client{Meta: store.Meta{ID: "cli"}, Type: store.ClientPublic, TokenEndpointAuthMethod: "none"}
	must(t, s.CreateClient(ctx(t), pub))
	got, err = s.GetClient(ctx(t), "cli")
	must(t, err)
	if !reflect.DeepEqual(got, pub) || got.SecretHash != nil || got.JWKS != nil || got.Scopes != nil || got.Resources != nil {
		t.Fatalf("GetClient(cli):\n got %+v\nwant %+v", got, pub)
	}
	wantErr(t, s.CreateClient(ctx(t), &store.Client{Meta: store.Meta{ID: "cli"}, Type: store.ClientPublic}), store.ErrConflict)
	for name, bad := range map[string]*store.Client{
		"no type":  {Name: "x"},
		"bad type": {Name: "x", Type: "trusted"},
		"bad jwks": {Name: "x", Type: store.ClientPublic, JWKS: []byte(`{"keys":`)},
	} {
		if err := s.CreateClient(ctx(t), bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	_, err = s.GetClient(ctx(t), "missing")
	wantErr(t, err, store.ErrNotFound)

	up, err := s.UpdateClient(ctx(t), c.ID, 1, func(c *store.Client) error {
		c.Disabled = true
		c.SecretHash = nil
		c.TokenEndpointAuthMethod = "private_key_jwt"
		c.RedirectURIs = c.RedirectURIs[:1]
		c.Resources, c.DefaultResources = []string{"urn:thingid:gateway"}, []string{"urn:thingid:gateway"}
		c.ID, c.Revision, c.Created = "hijack", 99, time.Time{} // must be ignored
		return nil
	})
	must(t, err)
	if up.ID != c.ID || up.Revision != 2 || !up.Created.Equal(c.Created) {
		t.Fatalf("update meta: %+v", up.Meta)
	}
	got, err = s.GetClient(ctx(t), c.ID)
	must(t, err)
	if !reflect.DeepEqual(got, up) || !got.Disabled || got.SecretHash != nil || len(got.RedirectURIs) != 1 ||
		!reflect.DeepEqual(got.Resources, []string{"urn:thingid:gateway"}) {
		t.Fatalf("after update:\n got %+v\nwant %+v", got, up)
	}
	_, err = s.UpdateClient(ctx(t), c.ID, 1, func(*store.Client) error { return nil })
	wantErr(t, err, store.ErrStale)
	refused := errors.New("refused")
	_, err = s.UpdateClient(ctx(t), c.ID, 0, func(*store.Client) error { return refused })
	wantErr(t, err, refused)
	_, err = s.UpdateClient(ctx(t), c.ID, 0, func(c *store.Client) error { c.Type = "bogus"; return nil })
	if err == nil {
		t.Fatal("update to an unknown client type stored")
	}
	_, err = s.UpdateClient(ctx(t), "missing", 0, func(*store.Client) error { return nil })
	wantErr(t, err, store.ErrNotFound)

	must(t, s.CreateClient(ctx(t), &store.Client{Name: "third", Type: store.ClientPublic}))
	for _, tt := range []struct {
		offset, limit int
		want          []string
	}{
		{0, -1, []string{c.ID, "cli", ""}},
		{1, 1, []string{"cli"}},
		{2, 10, []string{""}},
		{0, 0, nil}, // only the total, as in store.Query
		{5, 10, nil},
	} {
		cs, total, err := s.ListClients(ctx(t), tt.offset, tt.limit)
		must(t, err)
		if total != 3 || len(cs) != len(tt.want) {
			t.Fatalf("ListClients(%d, %d): %d clients of %d, want %d of 3", tt.offset, tt.limit, len(cs), total, len(tt.want))
		}
		for i, id := range tt.want {
			if id != "" && cs[i].ID != id {
				t.Fatalf("ListClients(%d, %d)[%d] = %s, want %s", tt.offset, tt.limit, i, cs[i].ID, id)
			}
		}
	}

	must(t, s.DeleteClient(ctx(t), "cli"))
	wantErr(t, s.DeleteClient(ctx(t), "cli"), store.ErrNotFound)
	_, err = s.GetClient(ctx(t), "cli")
	wantErr(t, err, store.ErrNotFound)
}

func testGrants(t *testing.T, s store.Store) {
	g1 := &store.Grant{UserID: "u1", ClientID: "c1", ThingID: "th1", Scopes: []string{"openid", "play"}, Created: base}
	g2 := &store.Grant{UserID: "u1", ClientID: "c2", Created: base.Add(time.Second)}
	g3 := &store.Grant{ClientID: "c1", Scopes: []string{"telemetry"}, Created: base.Add(2 * time.Second)} // client_credentials
	for _, g := range []*store.Grant{g1, g2, g3} {
		must(t, s.CreateGrant(ctx(t), g))
	}
	if g1.ID == "" || g1.ID == g2.ID {
		t.Fatalf("IDs not set: %q %q", g1.ID, g2.ID)
	}
	got, err := s.GetGrant(ctx(t), g1.ID)
	must(t, err)
	if !reflect.DeepEqual(got, g1) {
		t.Fatalf("GetGrant:\n got %+v\nwant %+v", got, g1)
	}
	wantErr(t, s.CreateGrant(ctx(t), &store.Grant{ID: g1.ID, ClientID: "c9"}), store.ErrConflict)
	if err := s.CreateGrant(ctx(t), &store.Grant{UserID: "u1"}); err == nil {
		t.Fatal("grant without client stored")
	}
	_, err = s.GetGrant(ctx(t), "missing")
	wantErr(t, err, store.ErrNotFound)

	ids := func(f store.GrantFilter) []string {
		t.Helper()
		gs, err := s.ListGrants(ctx(t), f)
		must(t, err)
		var out []string
		for _, g := range gs {
			out = append(out, g.ID)
		}
		return out
	}
	check := func(f store.GrantFilter, want ...string) {
		t.Helper()
		if got := ids(f); !reflect.DeepEqual(got, want) {
			t.Fatalf("ListGrants(%+v) = %v, want %v", f, got, want)
		}
	}
	check(store.GrantFilter{}, g1.ID, g2.ID, g3.ID)
	check(store.GrantFilter{UserID: "u1"}, g1.ID, g2.ID)
	check(store.GrantFilter{ClientID: "c1"}, g1.ID, g3.ID)
	check(store.GrantFilter{ThingID: "th1"}, g1.ID)
	check(store.GrantFilter{UserID: "u1", ClientID: "c2"}, g2.ID)
	check(store.GrantFilter{UserID: "nobody"})

	at := base.Add(time.Hour)
	must(t, s.RevokeGrant(ctx(t), g1.ID, at))
	must(t, s.RevokeGrant(ctx(t), g1.ID, at.Add(time.Hour))) // idempotent, first time kept
	wantErr(t, s.RevokeGrant(ctx(t), "missing", at), store.ErrNotFound)
	must(t, s.RevokeGrant(ctx(t), g3.ID, at.Add(-time.Minute)))
	for since, want := range map[time.Time]map[string]time.Time{
		at.Add(-time.Hour):   {g1.ID: at, g3.ID: at.Add(-time.Minute)},
		at.Add(-time.Minute): {g1.ID: at}, // after since, not at it
		at:                   {},
	} {
		got, err := s.RevokedGrantsSince(ctx(t), since)
		must(t, err)
		if len(got) != len(want) {
			t.Fatalf("RevokedGrantsSince(%s) = %v, want %v", since, got, want)
		}
		for id, w := range want {
			if !got[id].Equal(w) {
				t.Fatalf("RevokedGrantsSince(%s)[%s] = %s, want %s", since, id, got[id], w)
			}
		}
	}
	got, err = s.GetGrant(ctx(t), g1.ID)
	must(t, err)
	if !got.RevokedAt.Equal(at) {
		t.Fatalf("RevokedAt %v, want the first revocation %v", got.RevokedAt, at)
	}
	check(store.GrantFilter{UserID: "u1"}, g2.ID)
	check(store.GrantFilter{UserID: "u1", IncludeRevoked: true}, g1.ID, g2.ID)

	must(t, s.TouchGrant(ctx(t), g2.ID, at))
	must(t, s.TouchGrant(ctx(t), g2.ID, at.Add(-time.Minute))) // out of order: LastUsed stays
	wantErr(t, s.TouchGrant(ctx(t), "missing", at), store.ErrNotFound)
	if err := s.TouchGrant(ctx(t), g2.ID, time.Time{}); err == nil {
		t.Fatal("touch at the zero time accepted")
	}
	got, err = s.GetGrant(ctx(t), g2.ID)
	must(t, err)
	if !got.LastUsed.Equal(at) {
		t.Fatalf("LastUsed %v, want %v", got.LastUsed, at)
	}
}

// testStanding: Standing reads what GetGrant, GetThing and GetUser would
// say of the same ids, in one call; what is missing (or not asked, "") is
// not Found and not an error, and ids are data, never SQL.
func testStanding(t *testing.T, s store.Store) {
	u := &store.User{UserName: "alice", Status: store.StatusActive}
	must(t, s.CreateUser(ctx(t), u))
	th := newThing("SN-ST")
	must(t, s.CreateThing(ctx(t), th))
	g := &store.Grant{UserID: u.ID, ClientID: "c1", ThingID: th.ID, Scopes: []string{"mqtt"}}
	must(t, s.CreateGrant(ctx(t), g))
	standing := func(k store.StandingKeys) store.Standing {
		t.Helper()
		st, err := s.Standing(ctx(t), k)
		must(t, err)
		return st
	}
	want := store.Standing{
		Grant: store.GrantStanding{Found: true, ClientID: "c1", UserID: u.ID},
		Thing: store.ThingStanding{Found: true, Status: store.StatusActive, Model: "S1"},
		User:  store.UserStanding{Found: true, Status: store.StatusActive},
	}
	if got := standing(store.StandingKeys{Grant: g.ID, Thing: th.ID, User: u.ID}); got != want {
		t.Fatalf("Standing:\n got %+v\nwant %+v", got, want)
	}
	// Each part alone, the others not asked.
	for _, c := range []struct {
		k    store.StandingKeys
		want store.Standing
	}{
		{store.StandingKeys{Grant: g.ID}, store.Standing{Grant: want.Grant}},
		{store.StandingKeys{Thing: th.ID}, store.Standing{Thing: want.Thing}},
		{store.StandingKeys{User: u.ID}, store.Standing{User: want.User}},
		{store.StandingKeys{}, store.Standing{}},
		// Missing ids, and ids that would be SQL if they were pasted in.
		{store.StandingKeys{Grant: "missing", Thing: th.ID}, store.Standing{Thing: want.Thing}},
		{store.StandingKeys{Grant: g.ID, Thing: "missing", User: "missing"}, store.Standing{Grant: want.Grant}},
		{store.StandingKeys{Grant: "' OR '1'='1", Thing: "x' OR 1=1 --", User: `u" OR "1"="1`}, store.Standing{}},
		// A thing's id is not a user's, nor a grant's.
		{store.StandingKeys{Grant: th.ID, Thing: u.ID, User: g.ID}, store.Standing{}},
	} {
		if got := standing(c.k); got != c.want {
			t.Errorf("Standing(%+v):\n got %+v\nwant %+v", c.k, got, c.want)
		}
	}

	// What changes is read as it is now: revoked, disabled, deleted.
	at := base.Add(time.Hour)
	must(t, s.RevokeGrant(ctx(t), g.ID, at))
	_, err := s.UpdateThing(ctx(t), th.ID, 0, func(th *store.Thing) error {
		th.Status, th.Model = store.StatusDisabled, "S2"
		return nil
	})
	must(t, err)
	_, err = s.UpdateUser(ctx(t), u.ID, 0, func(u *store.User) error {
		u.Status = store.StatusDisabled
		return nil
	})
	must(t, err)
	got := standing(store.StandingKeys{Grant: g.ID, Thing: th.ID, User: u.ID})
	if !got.Grant.Found || !got.Grant.RevokedAt.Equal(at) || got.Thing != (store.ThingStanding{Found: true, Status: store.StatusDisabled, Model: "S2"}) ||
		got.User != (store.UserStanding{Found: true, Status: store.StatusDisabled}) {
		t.Fatalf("after revoking and disabling: %+v", got)
	}
	if stored, err := s.GetGrant(ctx(t), g.ID); err != nil || !stored.RevokedAt.Equal(got.Grant.RevokedAt) {
		t.Fatalf("GetGrant says revoked at %v (%v), Standing %v", stored, err, got.Grant.RevokedAt)
	}
	must(t, s.DeleteThing(ctx(t), th.ID, 0))
	must(t, s.DeleteUser(ctx(t), u.ID, 0))
	got = standing(store.StandingKeys{Grant: g.ID, Thing: th.ID, User: u.ID})
	if got.Thing.Found || got.User.Found || !got.Grant.Found {
		t.Fatalf("after deleting the thing and the user: %+v", got)
	}

	// Inside a transaction, Standing sees the transaction's own writes.
	err = s.WithTx(ctx(t), func(tx store.Tx) error {
		th2 := newThing("SN-ST2")
		if err := tx.CreateThing(ctx(t), th2); err != nil {
			return err
		}
		st, err := tx.Standing(ctx(t), store.StandingKeys{Thing: th2.ID})
		if err != nil {
			return err
		}
		if !st.Thing.Found {
			return fmt.Errorf("a thing created in the transaction is not found: %+v", st)
		}
		return nil
	})
	must(t, err)
}

// StandingPlan stores a few hundred users, things and grants and returns
// the backend's plan of a Standing of one of each, for the backends' tests
// to read (ExplainStanding, which the SQL store has).
func StandingPlan(t *testing.T, s store.Store) string {
	t.Helper()
	things := make([]*store.Thing, 300)
	for i := range things {
		things[i] = newThing(fmt.Sprintf("SN-%05d", i))
	}
	_, err := s.CreateThings(ctx(t), things)
	must(t, err)
	var g *store.Grant
	for i, th := range things {
		u := &store.User{UserName: fmt.Sprintf("user-%d", i), Status: store.StatusActive}
		must(t, s.CreateUser(ctx(t), u))
		g = &store.Grant{ClientID: "c", UserID: u.ID, ThingID: th.ID}
		must(t, s.CreateGrant(ctx(t), g))
	}
	ex, ok := s.(interface {
		ExplainStanding(ctx context.Context, k store.StandingKeys) (string, error)
	})
	if !ok {
		t.Fatalf("%T cannot explain its plans", s)
	}
	plan, err := ex.ExplainStanding(ctx(t), store.StandingKeys{Grant: g.ID, Thing: g.ThingID, User: g.UserID})
	must(t, err)
	return plan
}

func testRefreshTokens(t *testing.T, s store.Store) {
	g := &store.Grant{UserID: "u1", ClientID: "c1"}
	must(t, s.CreateGrant(ctx(t), g))
	// Resources are those of the original grant (RFC 8707 §2.2), kept in order.
	rt := &store.RefreshToken{Hash: hashOf("rt-1"), GrantID: g.ID, ClientID: "c1", Scopes: []string{"openid"},
		Created: base, ExpiresAt: base.Add(24 * time.Hour), DPoPJKT: "jkt",
		Resources: []string{"urn:thingid:gateway", "https://id.example"}}
	must(t, s.CreateRefreshToken(ctx(t), rt))
	wantErr(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt-1"), GrantID: g.ID, ClientID: "c1"}), store.ErrConflict)
	if err := s.CreateRefreshToken(ctx(t), &store.RefreshToken{GrantID: g.ID, ClientID: "c1"}); err == nil {
		t.Fatal("refresh token without hash stored")
	}

	at := base.Add(time.Hour)
	// Reading does not use it up.
	peek, err := s.GetRefreshToken(ctx(t), hashOf("rt-1"), at)
	must(t, err)
	if !reflect.DeepEqual(peek, rt) {
		t.Fatalf("GetRefreshToken:\n got %+v\nwant %+v", peek, rt)
	}
	_, err = s.GetRefreshToken(ctx(t), hashOf("unknown"), at)
	wantErr(t, err, store.ErrNotFound)
	got, err := s.UseRefreshToken(ctx(t), hashOf("rt-1"), at)
	must(t, err)
	want := *rt
	want.UsedAt = at
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("UseRefreshToken:\n got %+v\nwant %+v", got, &want)
	}
	// Reuse: the token comes back with ErrUsed so that the caller can revoke its grant.
	got, err = s.UseRefreshToken(ctx(t), hashOf("rt-1"), at.Add(time.Minute))
	wantErr(t, err, store.ErrUsed)
	if got == nil || got.GrantID != g.ID || !got.UsedAt.Equal(at) {
		t.Fatalf("reused token not returned with its first use: %+v", got)
	}
	_, err = s.UseRefreshToken(ctx(t), hashOf("unknown"), at)
	wantErr(t, err, store.ErrNotFound)
	if _, err := s.UseRefreshToken(ctx(t), hashOf("rt-1"), time.Time{}); err == nil || errors.Is(err, store.ErrUsed) {
		t.Fatalf("use at the zero time: %v, want a plain error", err)
	}

	// Expiry is judged at the time of use; a zero ExpiresAt never expires.
	must(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt-2"), GrantID: g.ID, ClientID: "c1", ExpiresAt: base.Add(time.Hour)}))
	_, err = s.UseRefreshToken(ctx(t), hashOf("rt-2"), base.Add(time.Hour))
	wantErr(t, err, store.ErrNotFound)
	must(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt-3"), GrantID: g.ID, ClientID: "c1"}))
	must(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt-4"), GrantID: g.ID, ClientID: "c1"}))
	// Without resources (a token stored before they were kept) reads as nil.
	if peek, err := s.GetRefreshToken(ctx(t), hashOf("rt-4"), base); err != nil || peek.Resources != nil {
		t.Fatalf("refresh token without resources: %+v %v, want Resources nil", peek, err)
	}
	_, err = s.UseRefreshToken(ctx(t), hashOf("rt-3"), base.AddDate(10, 0, 0))
	must(t, err)

	// A rotated token can still be read (to tell reuse from an unknown token).
	if peek, err = s.GetRefreshToken(ctx(t), hashOf("rt-1"), at); err != nil || !peek.UsedAt.Equal(at) {
		t.Fatalf("reading a rotated token: %+v %v", peek, err)
	}
	_, err = s.GetRefreshToken(ctx(t), hashOf("rt-2"), base.Add(time.Hour))
	wantErr(t, err, store.ErrNotFound)

	// Revoking the grant ends its tokens, used or not.
	must(t, s.RevokeGrant(ctx(t), g.ID, at))
	for _, h := range []string{"rt-1", "rt-3", "rt-4"} {
		_, err = s.UseRefreshToken(ctx(t), hashOf(h), at)
		wantErr(t, err, store.ErrNotFound)
		_, err = s.GetRefreshToken(ctx(t), hashOf(h), at)
		wantErr(t, err, store.ErrNotFound)
	}
	// A token stored for a revoked grant (a race with the revocation) is dead too.
	must(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt-5"), GrantID: g.ID, ClientID: "c1"}))
	_, err = s.UseRefreshToken(ctx(t), hashOf("rt-5"), at)
	wantErr(t, err, store.ErrNotFound)
}

func testConcurrentRefresh(t *testing.T, s store.Store) {
	g := &store.Grant{UserID: "u1", ClientID: "c1"}
	must(t, s.CreateGrant(ctx(t), g))
	must(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt"), GrantID: g.ID, ClientID: "c1"}))
	errs := race(20, func(i int) error {
		r, err := s.UseRefreshToken(ctx(t), hashOf("rt"), base.Add(time.Duration(i)*time.Second))
		if errors.Is(err, store.ErrUsed) && (r == nil || r.GrantID != g.ID) {
			return fmt.Errorf("reuse reported without the token: %+v", r)
		}
		return err
	})
	exactlyOnce(t, errs, store.ErrUsed)
}

func testAuthCodes(t *testing.T, s store.Store) {
	g := &store.Grant{UserID: "u1", ClientID: "c1"}
	must(t, s.CreateGrant(ctx(t), g))
	code := &store.AuthCode{
		Hash: hashOf("code-1"), ClientID: "c1", UserID: "u1", SessionID: "sess", RedirectURI: "https://app.example/cb",
		Scopes: []string{"openid", "profile"}, Nonce: "n-0S6", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256", DPoPJKT: "jkt-1", AuthTime: base, ExpiresAt: base.Add(time.Minute), GrantID: g.ID,
		Resources: []string{"urn:thingid:gateway", "https://api.example/"},
	}
	must(t, s.CreateAuthCode(ctx(t), code))
	wantErr(t, s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code-1"), ClientID: "c1", ExpiresAt: base.Add(time.Minute)}), store.ErrConflict)
	if err := s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code-x"), ClientID: "c1"}); err == nil {
		t.Fatal("code without expiry stored")
	}

	at := base.Add(10 * time.Second)
	got, err := s.UseAuthCode(ctx(t), hashOf("code-1"), at)
	must(t, err)
	want := *code
	want.UsedAt = at
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("UseAuthCode:\n got %+v\nwant %+v", got, &want)
	}
	got, err = s.UseAuthCode(ctx(t), hashOf("code-1"), at.Add(time.Second))
	wantErr(t, err, store.ErrUsed)
	if got == nil || got.GrantID != g.ID {
		t.Fatalf("reused code not returned: %+v", got)
	}
	_, err = s.UseAuthCode(ctx(t), hashOf("unknown"), at)
	wantErr(t, err, store.ErrNotFound)
	must(t, s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code-2"), ClientID: "c1", ExpiresAt: base.Add(time.Minute), GrantID: g.ID}))
	_, err = s.UseAuthCode(ctx(t), hashOf("code-2"), base.Add(time.Minute)) // expired at the time of use
	wantErr(t, err, store.ErrNotFound)
	must(t, s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code-3"), ClientID: "c1", ExpiresAt: base.Add(time.Minute), GrantID: g.ID}))

	// Revoking the grant deletes the unused code but keeps the used one, so a
	// replay is still recognised as one (RFC 6749 §4.1.2).
	must(t, s.RevokeGrant(ctx(t), g.ID, at))
	_, err = s.UseAuthCode(ctx(t), hashOf("code-3"), at)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UseAuthCode(ctx(t), hashOf("code-1"), at)
	wantErr(t, err, store.ErrUsed)
	// A code stored for a revoked grant cannot be redeemed.
	must(t, s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code-4"), ClientID: "c1", ExpiresAt: base.Add(time.Minute), GrantID: g.ID}))
	_, err = s.UseAuthCode(ctx(t), hashOf("code-4"), at)
	wantErr(t, err, store.ErrNotFound)
	// A code without a grant (the grant is made at the token endpoint) works.
	must(t, s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code-5"), ClientID: "c1", ExpiresAt: base.Add(time.Minute)}))
	_, err = s.UseAuthCode(ctx(t), hashOf("code-5"), at)
	must(t, err)
}

func testConcurrentAuthCodes(t *testing.T, s store.Store) {
	must(t, s.CreateAuthCode(ctx(t), &store.AuthCode{Hash: hashOf("code"), ClientID: "c1", ExpiresAt: base.Add(time.Minute)}))
	exactlyOnce(t, race(20, func(int) error {
		_, err := s.UseAuthCode(ctx(t), hashOf("code"), base)
		return err
	}), store.ErrUsed)
}

func testDeviceCodes(t *testing.T, s store.Store) {
	later := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Microsecond)
	d := &store.DeviceCode{Hash: hashOf("dc-1"), UserCode: "WDJBMJHT", ClientID: "speaker", Scopes: []string{"play"},
		ExpiresAt: later, Interval: 5 * time.Second, Resources: []string{"urn:thingid:mqtt", "https://id.example"}}
	must(t, s.CreateDeviceCode(ctx(t), d))
	if d.Status != store.DevicePending || d.Revision != 1 || d.Created.IsZero() {
		t.Fatalf("defaults not set: %+v", d)
	}
	got, err := s.GetDeviceCode(ctx(t), hashOf("dc-1"))
	must(t, err)
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("GetDeviceCode:\n got %+v\nwant %+v", got, d)
	}
	got, err = s.GetDeviceCodeByUserCode(ctx(t), "WDJBMJHT")
	must(t, err)
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("GetDeviceCodeByUserCode:\n got %+v\nwant %+v", got, d)
	}
	_, err = s.GetDeviceCodeByUserCode(ctx(t), "WDJB-MJHT") // normalizing is the caller's job
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDeviceCode(ctx(t), hashOf("nope"))
	wantErr(t, err, store.ErrNotFound)

	// The user code is unique among live requests, as is the hash.
	wantErr(t, s.CreateDeviceCode(ctx(t), &store.DeviceCode{Hash: hashOf("dc-2"), UserCode: "WDJBMJHT", ClientID: "speaker", ExpiresAt: later}), store.ErrConflict)
	wantErr(t, s.CreateDeviceCode(ctx(t), &store.DeviceCode{Hash: hashOf("dc-1"), UserCode: "OTHERONE", ClientID: "speaker", ExpiresAt: later}), store.ErrConflict)
	for name, bad := range map[string]*store.DeviceCode{
		"no hash":      {UserCode: "AAAABBBB", ClientID: "speaker", ExpiresAt: later},
		"no user code": {Hash: hashOf("x"), ClientID: "speaker", ExpiresAt: later},
		"no expiry":    {Hash: hashOf("x"), UserCode: "AAAABBBB", ClientID: "speaker"},
		"bad status":   {Hash: hashOf("x"), UserCode: "AAAABBBB", ClientID: "speaker", ExpiresAt: later, Status: "maybe"},
	} {
		if err := s.CreateDeviceCode(ctx(t), bad); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	// An expired request is not found by any door and frees its user code.
	must(t, s.CreateDeviceCode(ctx(t), &store.DeviceCode{Hash: hashOf("dc-old"), UserCode: "EXPIREDX", ClientID: "speaker", ExpiresAt: time.Now().Add(-time.Second)}))
	_, err = s.GetDeviceCode(ctx(t), hashOf("dc-old"))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDeviceCodeByUserCode(ctx(t), "EXPIREDX")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UpdateDeviceCode(ctx(t), hashOf("dc-old"), func(*store.DeviceCode) error { return nil })
	wantErr(t, err, store.ErrNotFound)
	must(t, s.CreateDeviceCode(ctx(t), &store.DeviceCode{Hash: hashOf("dc-new"), UserCode: "EXPIREDX", ClientID: "speaker", ExpiresAt: later}))
	got, err = s.GetDeviceCodeByUserCode(ctx(t), "EXPIREDX")
	must(t, err)
	if string(got.Hash) != string(hashOf("dc-new")) {
		t.Fatal("user code lookup found the expired request")
	}

	// Approval: fn changes what a decision changes; the identity of the request stays.
	polled := time.Now().UTC().Truncate(time.Microsecond)
	up, err := s.UpdateDeviceCode(ctx(t), hashOf("dc-1"), func(d *store.DeviceCode) error {
		d.Status, d.UserID, d.GrantID, d.LastPolled = store.DeviceApproved, "u1", "g1", polled
		d.Interval += 5 * time.Second // RFC 8628 §3.5: slow_down
		d.Hash, d.UserCode, d.ClientID, d.ExpiresAt, d.Revision = hashOf("other"), "HIJACKED", "evil", time.Time{}, 99
		d.Resources = []string{"urn:thingid:gateway"} // the request's resources are part of its identity
		return nil
	})
	must(t, err)
	want := *d
	want.Status, want.UserID, want.GrantID, want.LastPolled, want.Interval, want.Revision = store.DeviceApproved, "u1", "g1", polled, 10*time.Second, 2
	if !reflect.DeepEqual(up, &want) {
		t.Fatalf("UpdateDeviceCode:\n got %+v\nwant %+v", up, &want)
	}
	got, err = s.GetDeviceCode(ctx(t), hashOf("dc-1"))
	must(t, err)
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("after update:\n got %+v\nwant %+v", got, &want)
	}
	refused := errors.New("refused")
	_, err = s.UpdateDeviceCode(ctx(t), hashOf("dc-1"), func(d *store.DeviceCode) error { d.Status = store.DeviceUsed; return refused })
	wantErr(t, err, refused)
	if _, err := s.UpdateDeviceCode(ctx(t), hashOf("dc-1"), func(d *store.DeviceCode) error { d.Status = "bogus"; return nil }); err == nil {
		t.Fatal("unknown status stored")
	}
	got, err = s.GetDeviceCode(ctx(t), hashOf("dc-1"))
	must(t, err)
	if got.Status != store.DeviceApproved || got.Revision != 2 {
		t.Fatalf("a refused update changed the request: %+v", got)
	}
}

func testConcurrentDeviceUpdates(t *testing.T, s store.Store) {
	d := &store.DeviceCode{Hash: hashOf("dc"), UserCode: "RACERACE", ClientID: "speaker", ExpiresAt: time.Now().Add(time.Hour)}
	must(t, s.CreateDeviceCode(ctx(t), d))
	const n = 20
	for _, err := range race(n, func(int) error {
		_, err := s.UpdateDeviceCode(ctx(t), hashOf("dc"), func(d *store.DeviceCode) error {
			d.Interval += time.Second
			return nil
		})
		return err
	}) {
		must(t, err)
	}
	got, err := s.GetDeviceCode(ctx(t), hashOf("dc"))
	must(t, err)
	if got.Interval != n*time.Second || got.Revision != n+1 {
		t.Fatalf("interval %v revision %d, want %v and %d: an update was lost", got.Interval, got.Revision, n*time.Second, n+1)
	}
}

// testConcurrentDeviceCreates: of requests racing for one user code, one wins
// (RFC 8628 §6.1: a user code must identify one request), also when they race
// to take it over from an expired request.
func testConcurrentDeviceCreates(t *testing.T, s store.Store) {
	for _, holder := range []bool{false, true} {
		if holder {
			must(t, s.CreateDeviceCode(ctx(t), &store.DeviceCode{Hash: hashOf("old"), UserCode: "TAKEOVER", ClientID: "speaker", ExpiresAt: time.Now().Add(-time.Second)}))
		}
		code := map[bool]string{false: "RACERACE", true: "TAKEOVER"}[holder]
		exactlyOnce(t, race(10, func(i int) error {
			return s.CreateDeviceCode(ctx(t), &store.DeviceCode{Hash: hashOf(fmt.Sprint(code, i)), UserCode: code,
				ClientID: "speaker", ExpiresAt: time.Now().Add(time.Hour)})
		}), store.ErrConflict)
	}
}

func testConsents(t *testing.T, s store.Store) {
	c := &store.Consent{UserID: "u1", ClientID: "c1", Scopes: []string{"openid", "play"}, Created: base}
	must(t, s.PutConsent(ctx(t), c))
	got, err := s.GetConsent(ctx(t), "u1", "c1")
	must(t, err)
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("GetConsent:\n got %+v\nwant %+v", got, c)
	}
	// Put replaces.
	c2 := &store.Consent{UserID: "u1", ClientID: "c1", Scopes: []string{"openid"}}
	must(t, s.PutConsent(ctx(t), c2))
	got, err = s.GetConsent(ctx(t), "u1", "c1")
	must(t, err)
	if !reflect.DeepEqual(got, c2) || c2.Created.IsZero() {
		t.Fatalf("after replace:\n got %+v\nwant %+v", got, c2)
	}
	must(t, s.PutConsent(ctx(t), &store.Consent{UserID: "u1", ClientID: "c2"}))
	_, err = s.GetConsent(ctx(t), "u2", "c1")
	wantErr(t, err, store.ErrNotFound)
	if err := s.PutConsent(ctx(t), &store.Consent{UserID: "u1"}); err == nil {
		t.Fatal("consent without client stored")
	}
	must(t, s.DeleteConsent(ctx(t), "u1", "c1"))
	wantErr(t, s.DeleteConsent(ctx(t), "u1", "c1"), store.ErrNotFound)
	_, err = s.GetConsent(ctx(t), "u1", "c1")
	wantErr(t, err, store.ErrNotFound)
	if _, err := s.GetConsent(ctx(t), "u1", "c2"); err != nil {
		t.Fatalf("another consent went too: %v", err)
	}
}

// testOAuthWithTx: unlinking a device (removing the owner relationship) and
// revoking its grants commit or roll back together.
func testOAuthWithTx(t *testing.T, s store.Store) {
	u := &store.User{UserName: "owner"}
	must(t, s.CreateUser(ctx(t), u))
	th := newThing("TX-OAUTH-1")
	must(t, s.CreateThing(ctx(t), th))
	owner := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}
	must(t, s.AddRelationship(ctx(t), owner))
	g := &store.Grant{UserID: u.ID, ClientID: "speaker", ThingID: th.ID}
	must(t, s.CreateGrant(ctx(t), g))
	must(t, s.CreateRefreshToken(ctx(t), &store.RefreshToken{Hash: hashOf("rt"), GrantID: g.ID, ClientID: "speaker"}))

	unlink := func(tx store.Tx, fail error) error {
		if err := tx.RemoveRelationship(ctx(t), owner); err != nil {
			return err
		}
		gs, err := tx.ListGrants(ctx(t), store.GrantFilter{UserID: u.ID, ThingID: th.ID})
		if err != nil {
			return err
		}
		for _, g := range gs {
			if err := tx.RevokeGrant(ctx(t), g.ID, base); err != nil {
				return err
			}
		}
		// Reads inside the transaction see its writes.
		if g, err := tx.GetGrant(ctx(t), g.ID); err != nil || g.RevokedAt.IsZero() {
			return fmt.Errorf("grant not revoked inside the transaction: %+v %v", g, err)
		}
		return fail
	}
	boom := errors.New("boom")
	wantErr(t, s.WithTx(ctx(t), func(tx store.Tx) error { return unlink(tx, boom) }), boom)
	got, err := s.GetGrant(ctx(t), g.ID)
	must(t, err)
	rels, err := s.ListRelationships(ctx(t), store.RelFilter{Kind: store.RelOwner})
	must(t, err)
	if !got.RevokedAt.IsZero() || len(rels) != 1 {
		t.Fatalf("rollback kept the revocation (%v) or lost the owner (%d relationships)", got.RevokedAt, len(rels))
	}

	must(t, s.WithTx(ctx(t), func(tx store.Tx) error { return unlink(tx, nil) }))
	got, err = s.GetGrant(ctx(t), g.ID)
	must(t, err)
	if !got.RevokedAt.Equal(base) {
		t.Fatalf("RevokedAt %v after commit", got.RevokedAt)
	}
	_, err = s.UseRefreshToken(ctx(t), hashOf("rt"), base)
	wantErr(t, err, store.ErrNotFound)
}

// testDeleteIdentityRevokesNothing pins the choice documented in store/oauth.go:
// DeleteUser and DeleteThing leave OAuth rows alone (revoking is the caller's
// decision, because the caller publishes revocations), and the rows left
// behind break nothing.
func testDeleteIdentityRevokesNothing(t *testing.T, s store.Store) {
	u := &store.User{UserName: "leaving"}
	must(t, s.CreateUser(ctx(t), u))
	th := newThing("GONE-1")
	must(t, s.CreateThing(ctx(t), th))
	g := &store.Grant{UserID: u.ID, ClientID: "speaker", ThingID: th.ID}
	must(t, s.CreateGrant(ctx(t), g))
	must(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("cookie"), UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}))
	must(t, s.PutConsent(ctx(t), &store.Consent{UserID: u.ID, ClientID: "speaker"}))

	must(t, s.DeleteUser(ctx(t), u.ID, 0))
	must(t, s.DeleteThing(ctx(t), th.ID, 0))

	got, err := s.GetGrant(ctx(t), g.ID)
	must(t, err)
	if !got.RevokedAt.IsZero() {
		t.Fatal("deleting the user revoked the grant behind the caller's back")
	}
	// The leftovers can still be found and cleaned up by the caller.
	gs, err := s.ListGrants(ctx(t), store.GrantFilter{UserID: u.ID})
	must(t, err)
	if len(gs) != 1 {
		t.Fatalf("%d grants of the deleted user, want 1", len(gs))
	}
	must(t, s.RevokeGrant(ctx(t), g.ID, base))
	must(t, s.DeleteUserSessions(ctx(t), u.ID))
	must(t, s.DeleteConsent(ctx(t), u.ID, "speaker"))
	// A new user never inherits them: IDs are not reused.
	u2 := &store.User{UserName: "leaving"}
	must(t, s.CreateUser(ctx(t), u2))
	gs, err = s.ListGrants(ctx(t), store.GrantFilter{UserID: u2.ID, IncludeRevoked: true})
	must(t, err)
	if u2.ID == u.ID || len(gs) != 0 {
		t.Fatalf("new user %s inherited %d grants", u2.ID, len(gs))
	}
}

// testPurgeExpired: expired short-lived records go, live ones stay.
func testPurgeExpired(t *testing.T, s store.Store) {
	now := time.Now()
	past, later := now.Add(-time.Minute), now.Add(time.Hour)
	must(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("old"), UserID: "u1", ExpiresAt: past}))
	must(t, s.CreateSession(ctx(t), &store.Session{Hash: hashOf("live"), UserID: "u1", ExpiresAt: later}))
	must(t, s.UseOnce(ctx(t), "purge:old", past))
	must(t, s.UseOnce(ctx(t), "purge:live", later))
	n, err := s.PurgeExpired(ctx(t), now)
	must(t, err)
	if n < 2 {
		t.Errorf("purged %d records, want at least the expired session and replay record", n)
	}
	if _, err := s.GetSession(ctx(t), hashOf("live")); err != nil {
		t.Errorf("live session purged: %v", err)
	}
	wantErr(t, s.UseOnce(ctx(t), "purge:live", later), store.ErrUsed)
	// The purged record is gone for good: the key can be recorded afresh.
	must(t, s.UseOnce(ctx(t), "purge:old", later))
	sessions, err := s.ListSessions(ctx(t), "u1")
	must(t, err)
	if len(sessions) != 1 {
		t.Errorf("%d sessions left, want the live one", len(sessions))
	}
}
