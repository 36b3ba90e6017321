// Package psk owns things' DTLS pre-shared keys (RFC 4279, for the CoAP
// gateway's smallest devices): the PSK identity that names a thing and its
// key, issuing a key, sealing it with the master key for the store, and
// finding the clear key of an identity during a handshake. It writes
// nothing: identity stores what Issue makes, and no key is ever logged.
package psk

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
)

// ErrRefused wraps every reason an identity gets no key: malformed, no such
// thing, not its current key, the thing not active.
var ErrRefused = errors.New("PSK refused")

const (
	// keyBytes of randomness make a key: 256 bits.
	keyBytes = 32
	// keyIDBytes of randomness name a key in its identity.
	keyIDBytes = 8
	// MaxIdentity bounds an identity: RFC 4279 §5.3 asks servers to take
	// 128 bytes; a thing's id and a key id need far less.
	MaxIdentity = 128
	// maxThingID bounds the thing id part.
	maxThingID = 64
)

// Identity is a PSK identity: "<thing id>.<key id>", the thing's id and 16
// lower-case hex digits naming the key. A re-issued key has a new key id,
// so the identity of a replaced key names nothing.
type Identity struct {
	ThingID string
	KeyID   string
}

func (id Identity) String() string { return id.ThingID + "." + id.KeyID }

// ParseIdentity reads an identity as a client sent it.
func ParseIdentity(b []byte) (Identity, error) {
	if len(b) == 0 || len(b) > MaxIdentity {
		return Identity{}, fmt.Errorf("%w: PSK identity: %d bytes, want 1 to %d", ErrRefused, len(b), MaxIdentity)
	}
	s := string(b)
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return Identity{}, fmt.Errorf("%w: PSK identity: want <thing id>.<key id>", ErrRefused)
	}
	id := Identity{ThingID: s[:dot], KeyID: s[dot+1:]}
	if err := checkThingID(id.ThingID); err != nil {
		return Identity{}, fmt.Errorf("%w: PSK identity: %v", ErrRefused, err)
	}
	if len(id.KeyID) != 2*keyIDBytes || strings.ToLower(id.KeyID) != id.KeyID {
		return Identity{}, fmt.Errorf("%w: PSK identity: the key id must be %d lower-case hex digits", ErrRefused, 2*keyIDBytes)
	}
	if _, err := hex.DecodeString(id.KeyID); err != nil {
		return Identity{}, fmt.Errorf("%w: PSK identity: the key id must be %d lower-case hex digits", ErrRefused, 2*keyIDBytes)
	}
	return id, nil
}

// checkThingID: the identities of things whose ids are letters, digits,
// '-' and '_' (the store's UUIDs) parse back to the same thing.
func checkThingID(s string) error {
	if s == "" || len(s) > maxThingID {
		return fmt.Errorf("the thing id must be 1 to %d characters", maxThingID)
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
			return errors.New("the thing id may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// Issued is what the device gets, once: its identity and its key. The key
// is 43 characters (base64url of 32 random bytes) and those characters are
// the pre-shared key, as libcoap's `-k` takes it.
type Issued struct {
	Identity string
	Key      string
}

// Issue makes a new key for the thing: what the device gets and what the
// store keeps (sealed with master).
func Issue(master secrets.Key, thingID string) (Issued, *store.ThingPSK, error) {
	b := make([]byte, keyBytes+keyIDBytes)
	if _, err := rand.Read(b); err != nil {
		return Issued{}, nil, err
	}
	id := Identity{ThingID: thingID, KeyID: hex.EncodeToString(b[keyBytes:])}
	in := Issued{Identity: id.String(), Key: base64.RawURLEncoding.EncodeToString(b[:keyBytes])}
	k, err := Seal(master, in)
	return in, k, err
}

// Seal is what the store keeps of an issued key: sealed under a label that
// names the thing and the key id, so that a sealed key copied onto another
// thing's row, or kept under another key id, does not open.
func Seal(master secrets.Key, in Issued) (*store.ThingPSK, error) {
	id, err := ParseIdentity([]byte(in.Identity))
	if err != nil {
		return nil, err
	}
	if b, err := base64.RawURLEncoding.DecodeString(in.Key); err != nil || len(b) != keyBytes {
		return nil, fmt.Errorf("PSK of %s: the key must be %d bytes in unpadded base64url", id.ThingID, keyBytes)
	}
	sealed, err := master.Seal([]byte(in.Key), label(id))
	if err != nil {
		return nil, err
	}
	return &store.ThingPSK{ThingID: id.ThingID, KeyID: id.KeyID, Sealed: sealed}, nil
}

func label(id Identity) string { return "thing-psk:" + id.String() }

// Reader is what Keys reads: the store.
type Reader interface {
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	GetThingPSKState(ctx context.Context, thingID string) (*store.ThingPSKState, error)
}

// maxThings bounds the things Keys keeps; past it they start afresh.
const maxThings = 4096

// Keys finds the key of a PSK identity in the store. It keeps no key: each
// handshake reads the thing's status and its sealed key in one statement
// (store.ThingPSKState) and opens the key, so a disabled thing or a
// re-issued key counts from its commit on. The rest of the thing, which
// the handshake does not decide on, is kept between handshakes while its
// revision stays the same: reading and decoding the whole thing cost five
// times the key's row.
type Keys struct {
	store  Reader
	master secrets.Key

	mu     sync.Mutex
	things map[string]*store.Thing // by id, as last read
}

// NewKeys reads keys from r and opens them with master.
func NewKeys(r Reader, master secrets.Key) *Keys { return &Keys{store: r, master: master} }

// Key returns the thing an identity names and its key in clear, or an error
// wrapping ErrRefused when the identity is malformed, names no thing's
// current key, or the thing is not active. Other errors are the store's.
// The thing may be shared with other callers: it must not be modified.
func (k *Keys) Key(ctx context.Context, identity []byte) (*store.Thing, []byte, error) {
	id, err := ParseIdentity(identity)
	if err != nil {
		return nil, nil, err
	}
	st, err := k.store.GetThingPSKState(ctx, id.ThingID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: thing %s does not exist", ErrRefused, id.ThingID)
	}
	if err != nil {
		return nil, nil, err
	}
	if st.Status != store.StatusActive {
		return nil, nil, fmt.Errorf("%w: thing %s is %s", ErrRefused, id.ThingID, st.Status)
	}
	if st.Key == nil {
		return nil, nil, fmt.Errorf("%w: thing %s has no pre-shared key", ErrRefused, id.ThingID)
	}
	// Key ids are no secret (the identity travels in clear).
	if st.Key.KeyID != id.KeyID {
		return nil, nil, fmt.Errorf("%w: key %s of thing %s was replaced", ErrRefused, id.KeyID, id.ThingID)
	}
	key, err := k.master.Open(st.Key.Sealed, label(id))
	if err != nil {
		return nil, nil, fmt.Errorf("PSK of thing %s: %w", id.ThingID, err)
	}
	t, err := k.thing(ctx, id.ThingID, st.Revision)
	if err != nil {
		return nil, nil, err
	}
	return t, key, nil
}

// thing is the thing at revision: the one kept, or else the store's. A
// thing read from the store may be newer than the state (changed in
// between), so its status is judged again.
func (k *Keys) thing(ctx context.Context, id string, revision int64) (*store.Thing, error) {
	k.mu.Lock()
	t, ok := k.things[id]
	k.mu.Unlock()
	if ok && t.Revision == revision {
		return t, nil
	}
	t, err := k.store.GetThing(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: thing %s does not exist", ErrRefused, id)
	}
	if err != nil {
		return nil, err
	}
	if t.Status != store.StatusActive {
		return nil, fmt.Errorf("%w: thing %s is %s", ErrRefused, id, t.Status)
	}
	k.mu.Lock()
	if k.things == nil || len(k.things) >= maxThings {
		k.things = map[string]*store.Thing{}
	}
	k.things[id] = t
	k.mu.Unlock()
	return t, nil
}
