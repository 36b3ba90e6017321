package store

import (
	"context"
	"time"
)

// RevokedCWT is an access token in CWT form (internal/ace) revoked on its
// own, by its cti (RFC 8392 §3.1.7): refused until it expires, when the
// row may go.
type RevokedCWT struct {
	CTI       []byte
	ExpiresAt time.Time // the token's exp
	Revoked   time.Time // now when zero
}

// RevokedCWTs stores CWTs revoked by their cti.
type RevokedCWTs interface {
	// RevokeCWT records r; revoking a cti again keeps the later ExpiresAt.
	RevokeCWT(ctx context.Context, r *RevokedCWT) error
	// ListRevokedCWTs returns the revocations whose token has not expired
	// at now.
	ListRevokedCWTs(ctx context.Context, now time.Time) ([]RevokedCWT, error)
}
