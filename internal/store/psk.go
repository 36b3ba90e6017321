package store

import (
	"context"
	"time"
)

// ThingPSK is a thing's DTLS pre-shared key (RFC 4279), sealed with the
// master key: the store never holds the key in clear. KeyID names this key
// in the thing's PSK identity and is new at every re-issue.
type ThingPSK struct {
	ThingID string
	KeyID   string
	Sealed  []byte
	Created time.Time // now when zero
}

// ThingPSKState is what a PSK handshake decides on, read in one statement:
// the thing's status and revision, and its key. A handshake needs no more
// of the thing than these; the revision says whether a copy of the thing
// read before is still the thing as it is now.
type ThingPSKState struct {
	Status   Status
	Revision int64     // the thing's
	Key      *ThingPSK // nil when the thing has no key
}

// ThingPSKs stores things' pre-shared keys, at most one per thing.
// Deleting the thing deletes its key.
type ThingPSKs interface {
	// PutThingPSK stores k as its thing's key, replacing the one it had,
	// and reports whether there was one. ErrNotFound when the thing does
	// not exist.
	PutThingPSK(ctx context.Context, k *ThingPSK) (replaced bool, err error)
	// GetThingPSK returns the thing's key; ErrNotFound when it has none.
	GetThingPSK(ctx context.Context, thingID string) (*ThingPSK, error)
	// GetThingPSKState returns the thing's status, revision and key (nil
	// when it has none); ErrNotFound when the thing does not exist.
	GetThingPSKState(ctx context.Context, thingID string) (*ThingPSKState, error)
}
