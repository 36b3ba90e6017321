package tokens

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
)

// Signature algorithms of platform keys. They are the whole allow-list: a token
// is verified with the algorithm of the key its kid names, never with the one
// its header claims (RFC 8725 §3.1), so "none" and HS* can never verify.
const (
	ES256 = "ES256" // ECDSA P-256 SHA-256, the default (RFC 7518 §3.4)
	EdDSA = "EdDSA" // Ed25519 (RFC 8037 §3.1)
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 SHA-256, 3072-bit keys (RFC 7518 §3.3)
)

// EventRotate is published on the bus (ID: the new kid) after Rotate; every
// node reloads its keys when it sees one.
const EventRotate = "signing-key.rotate"

const (
	defaultMaxTokenLifetime = time.Hour
	defaultReloadInterval   = 30 * time.Second
	rsaBits                 = 3072
	// minRefreshGap paces the reloads that unknown kids trigger, so that tokens
	// with made-up kids cannot hammer the store.
	minRefreshGap = time.Second
)

// KeyStore is what Keys needs of the store (store.SigningKeys).
type KeyStore interface {
	CreateSigningKey(ctx context.Context, k *store.SigningKey) error
	ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error)
	RetireSigningKey(ctx context.Context, kid string, at, expiresAt time.Time) error
}

// KeysConfig configures Keys; the zero value of every field but MasterKey runs.
type KeysConfig struct {
	// MasterKey seals private keys at rest.
	MasterKey secrets.Key
	// Alg of new keys: ES256 (default), EdDSA or RS256.
	Alg string
	// MaxTokenLifetime bounds exp-iat of every token signed (default 1 h); a
	// retired key stays published at least that long.
	MaxTokenLifetime time.Duration
	// ReloadInterval is how often keys are re-read from the store (default 30 s).
	ReloadInterval time.Duration
	// Bus carries EventRotate between nodes; nil for a single node.
	Bus *events.Bus
	// Log receives reload failures; nil for slog.Default().
	Log *slog.Logger
	// Now is the clock (tests); nil for time.Now.
	Now func() time.Time
}

// Keys holds the platform's signing keys as stored, reloading them so that all
// nodes of one store sign with the same key and publish the same JWKS.
type Keys struct {
	st  KeyStore
	cfg KeysConfig
	cur atomic.Pointer[keySet]

	// reloading serializes reloads; a channel rather than a mutex so that a
	// request waiting for a reload can give up when its context ends.
	reloading  chan struct{}
	lastReload time.Time // monotonic; guarded by reloading

	wake        chan struct{}
	stop        context.CancelFunc
	done        chan struct{}
	unsubscribe func()
}

// publicKey is a published key, with the one algorithm it verifies.
type publicKey struct {
	kid       string
	alg       jwa.SignatureAlgorithm
	key       crypto.PublicKey
	expiresAt time.Time // zero while active
}

// signingKey is the key new tokens are signed with.
type signingKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv crypto.Signer
}

// keySet is one immutable snapshot of the store.
type keySet struct {
	signing   *signingKey
	published map[string]publicKey
	jwks      []byte // RFC 7517 §5 JWK Set of published
}

// NewKeys loads the keys from st, generating and storing the first one when no
// key is active, and keeps reloading them until Close.
func NewKeys(ctx context.Context, st KeyStore, cfg KeysConfig) (*Keys, error) {
	cfg.Alg = cmp.Or(cfg.Alg, ES256)
	if _, err := algorithm(cfg.Alg); err != nil {
		return nil, fmt.Errorf("tokens: signing alg: %w", err)
	}
	cfg.MaxTokenLifetime = cmp.Or(cfg.MaxTokenLifetime, defaultMaxTokenLifetime)
	cfg.ReloadInterval = cmp.Or(cfg.ReloadInterval, defaultReloadInterval)
	if cfg.MaxTokenLifetime < 0 || cfg.ReloadInterval < 0 {
		return nil, errors.New("tokens: maxTokenLifetime and reloadInterval must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &Keys{st: st, cfg: cfg, reloading: make(chan struct{}, 1), wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := k.Reload(ctx); err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	k.stop = stop
	k.unsubscribe = func() {}
	if cfg.Bus != nil {
		k.unsubscribe = cfg.Bus.Subscribe(func(e events.Event) {
			if e.Type == EventRotate || e.Type == events.Resync {
				k.poke()
			}
		})
	}
	go k.run(runCtx)
	return k, nil
}

// Close stops the reloading.
func (k *Keys) Close() {
	k.unsubscribe()
	k.stop()
	<-k.done
}

// MaxTokenLifetime is the longest lifetime a token signed with these keys may have.
func (k *Keys) MaxTokenLifetime() time.Duration { return k.cfg.MaxTokenLifetime }

// Reload re-reads the keys from the store now.
func (k *Keys) Reload(ctx context.Context) error {
	if err := k.lock(ctx); err != nil {
		return err
	}
	defer k.unlock()
	return k.reloadLocked(ctx)
}

func (k *Keys) lock(ctx context.Context) error {
	select {
	case k.reloading <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *Keys) unlock() { <-k.reloading }

// Rotate makes a new key the signing key and retires every other one; retired
// keys stay published until the tokens they signed have expired.
func (k *Keys) Rotate(ctx context.Context) error {
	if err := k.lock(ctx); err != nil {
		return err
	}
	defer k.unlock()
	nk, err := newKey(k.cfg.Alg, k.cfg.MasterKey, k.cfg.Now())
	if err != nil {
		return err
	}
	if err := k.st.CreateSigningKey(ctx, nk); err != nil {
		return fmt.Errorf("tokens: store signing key: %w", err)
	}
	rows, err := k.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("tokens: list signing keys: %w", err)
	}
	for _, r := range rows {
		if r.KID != nk.KID && r.RetiredAt.IsZero() {
			if err := k.retire(ctx, r); err != nil {
				return err
			}
		}
	}
	if err := k.reloadLocked(ctx); err != nil {
		return err
	}
	k.cfg.Bus.Publish(events.Event{Type: EventRotate, Kind: "signing-key", ID: nk.KID})
	return nil
}

// retention is how long a retired key stays published: the longest token
// lifetime, plus the time other nodes may still sign with it before they
// reload, plus the leeway verifiers allow on exp.
func (k *Keys) retention() time.Duration {
	return k.cfg.MaxTokenLifetime + k.cfg.ReloadInterval + MaxLeeway
}

func (k *Keys) retire(ctx context.Context, r *store.SigningKey) error {
	at := k.cfg.Now()
	exp := at.Add(k.retention())
	if err := k.st.RetireSigningKey(ctx, r.KID, at, exp); err != nil {
		return fmt.Errorf("tokens: retire signing key %s: %w", r.KID, err)
	}
	r.RetiredAt, r.ExpiresAt = at, exp
	return nil
}

// reloadLocked reads the store and swaps in a new snapshot. When no key is
// active it generates one; when several are (nodes that generated their first
// key at the same moment), every node picks the same one, the newest by
// (Created, KID), and the others are retired: still published, never lost.
func (k *Keys) reloadLocked(ctx context.Context) error {
	rows, err := k.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("tokens: list signing keys: %w", err)
	}
	active := activeKeys(rows)
	if len(active) == 0 {
		nk, err := newKey(k.cfg.Alg, k.cfg.MasterKey, k.cfg.Now())
		if err != nil {
			return err
		}
		if err := k.st.CreateSigningKey(ctx, nk); err != nil {
			return fmt.Errorf("tokens: store signing key: %w", err)
		}
		if rows, err = k.st.ListSigningKeys(ctx); err != nil {
			return fmt.Errorf("tokens: list signing keys: %w", err)
		}
		if active = activeKeys(rows); len(active) == 0 {
			return errors.New("tokens: the signing key just stored is not listed as active")
		}
	}
	for _, r := range active[1:] {
		// Another node may be retiring it too; the next reload tries again.
		if err := k.retire(ctx, r); err != nil {
			k.cfg.Log.Warn("tokens: retire concurrent signing key", "kid", r.KID, "err", err)
		}
	}
	set, err := k.snapshot(rows, active[0])
	if err != nil {
		return err
	}
	k.cur.Store(set)
	k.lastReload = time.Now()
	return nil
}

// activeKeys returns the keys not retired, newest first.
func activeKeys(rows []*store.SigningKey) []*store.SigningKey {
	var active []*store.SigningKey
	for _, r := range rows {
		if r.RetiredAt.IsZero() {
			active = append(active, r)
		}
	}
	slices.SortFunc(active, func(a, b *store.SigningKey) int {
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.KID, a.KID))
	})
	return active
}

// snapshot builds the published set from rows and opens the signing key.
// A damaged retired key is left out (and logged) rather than stopping the node.
func (k *Keys) snapshot(rows []*store.SigningKey, signer *store.SigningKey) (*keySet, error) {
	now := k.cfg.Now()
	set := &keySet{published: map[string]publicKey{}}
	jwks := jwk.NewSet()
	for _, r := range rows {
		if !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt) {
			continue
		}
		pk, pub, err := parsePublic(r)
		if err != nil {
			if r == signer {
				return nil, err
			}
			k.cfg.Log.Error("tokens: skipping damaged signing key", "kid", r.KID, "err", err)
			continue
		}
		if err := jwks.AddKey(pub); err != nil {
			return nil, fmt.Errorf("tokens: key %s: %w", r.KID, err)
		}
		set.published[r.KID] = pk
	}
	sk, err := k.open(signer, set.published[signer.KID])
	if err != nil {
		return nil, err
	}
	set.signing = sk
	if set.jwks, err = json.Marshal(jwks); err != nil {
		return nil, fmt.Errorf("tokens: encode JWKS: %w", err)
	}
	return set, nil
}

// parsePublic checks a stored public JWK against its row: the kid must be its
// RFC 7638 thumbprint and the key type must fit the row's algorithm.
func parsePublic(r *store.SigningKey) (publicKey, jwk.Key, error) {
	alg, err := algorithm(r.Alg)
	if err != nil {
		return publicKey{}, nil, err
	}
	parsed, err := jwk.ParseKey(r.Public)
	if err != nil {
		return publicKey{}, nil, fmt.Errorf("public JWK: %w", err)
	}
	pub, err := jwk.PublicKeyOf(parsed)
	if err != nil {
		return publicKey{}, nil, fmt.Errorf("public JWK: %w", err)
	}
	if kid, err := thumbprint(pub); err != nil || kid != r.KID {
		return publicKey{}, nil, fmt.Errorf("kid %s is not the thumbprint of its public key", r.KID)
	}
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return publicKey{}, nil, fmt.Errorf("public JWK: %w", err)
	}
	if err := fits(r.Alg, raw); err != nil {
		return publicKey{}, nil, err
	}
	// RFC 7517 §4.2-4.5: say what the key is for and with which algorithm.
	for name, v := range map[string]any{jwk.KeyIDKey: r.KID, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: jwk.ForSignature} {
		if err := pub.Set(name, v); err != nil {
			return publicKey{}, nil, err
		}
	}
	return publicKey{kid: r.KID, alg: alg, key: raw, expiresAt: r.ExpiresAt}, pub, nil
}

// open unseals the private key of row and checks that it pairs with its public key.
func (k *Keys) open(r *store.SigningKey, pk publicKey) (*signingKey, error) {
	if pk.key == nil {
		return nil, fmt.Errorf("tokens: signing key %s is expired or damaged", r.KID)
	}
	der, err := k.cfg.MasterKey.Open(r.Sealed, sealLabel(r.KID))
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key %s: %w", r.KID, err)
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: signing key %s: %w", r.KID, err)
	}
	priv, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("tokens: signing key %s: %T cannot sign", r.KID, key)
	}
	if eq, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pk.key) {
		return nil, fmt.Errorf("tokens: signing key %s does not match its public key", r.KID)
	}
	return &signingKey{kid: r.KID, alg: pk.alg, priv: priv}, nil
}

// newKey generates a key of alg and seals it: PKCS#8 DER under the master key,
// bound to its kid by the label.
func newKey(alg string, mk secrets.Key, now time.Time) (*store.SigningKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		err = fmt.Errorf("unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("tokens: generate signing key: %w", err)
	}
	pub, err := jwk.Import(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("tokens: generate signing key: %w", err)
	}
	kid, err := thumbprint(pub)
	if err != nil {
		return nil, err
	}
	public, err := json.Marshal(pub)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode private key: %w", err)
	}
	defer clear(der)
	sealed, err := mk.Seal(der, sealLabel(kid))
	if err != nil {
		return nil, fmt.Errorf("tokens: seal private key: %w", err)
	}
	return &store.SigningKey{KID: kid, Alg: alg, Sealed: sealed, Public: public, Created: now.UTC()}, nil
}

func sealLabel(kid string) string { return "signing-key:" + kid }

// thumbprint is the RFC 7638 §3 SHA-256 JWK thumbprint, base64url: the kid.
func thumbprint(k jwk.Key) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("tokens: JWK thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// algorithm maps a platform algorithm name to jwx; anything else is refused.
func algorithm(name string) (jwa.SignatureAlgorithm, error) {
	switch name {
	case ES256:
		return jwa.ES256(), nil
	case EdDSA:
		return jwa.EdDSA(), nil
	case RS256:
		return jwa.RS256(), nil
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("unsupported algorithm %q (want ES256, EdDSA or RS256)", name)
}

// fits checks that a public key is of the type alg needs (RFC 7518 §3.3-3.4, RFC 8037 §3.1).
func fits(alg string, key any) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if alg == ES256 && k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PublicKey:
		if alg == EdDSA {
			return nil
		}
	case *rsa.PublicKey:
		if alg == RS256 && k.N.BitLen() >= 2048 {
			return nil
		}
	}
	return fmt.Errorf("a %T is not a key for %s", key, alg)
}

// current is the latest snapshot.
func (k *Keys) current() *keySet { return k.cur.Load() }

// lookup returns the published key kid, reloading once (paced) when it is
// unknown: another node may have rotated a moment ago.
func (k *Keys) lookup(ctx context.Context, kid string) (publicKey, bool, error) {
	if pk, ok := k.published(kid); ok {
		return pk, true, nil
	}
	if err := k.refresh(ctx); err != nil {
		return publicKey{}, false, err
	}
	pk, ok := k.published(kid)
	return pk, ok, nil
}

func (k *Keys) published(kid string) (publicKey, bool) {
	pk, ok := k.current().published[kid]
	if ok && !pk.expiresAt.IsZero() && !k.cfg.Now().Before(pk.expiresAt) {
		return publicKey{}, false
	}
	return pk, ok
}

// refresh reloads unless another caller did while this one waited, at most
// once per minRefreshGap.
func (k *Keys) refresh(ctx context.Context) error {
	asked := time.Now()
	if err := k.lock(ctx); err != nil {
		return err
	}
	defer k.unlock()
	if k.lastReload.After(asked) {
		return nil
	}
	if wait := minRefreshGap - time.Since(k.lastReload); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return k.reloadLocked(ctx)
}

func (k *Keys) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *Keys) run(ctx context.Context) {
	defer close(k.done)
	t := time.NewTicker(k.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.wake:
		}
		if err := k.Reload(ctx); err != nil && ctx.Err() == nil {
			k.cfg.Log.Error("tokens: reload signing keys", "err", err)
		}
	}
}
