package store

import (
	"context"
	"time"
)

// PasswordReset is an outstanding "forgot password" link: its token is
// e-mailed to the user and only its keyed hash is stored. It is single use
// (using it deletes it) and short-lived.
type PasswordReset struct {
	Hash      []byte
	UserID    string
	Created   time.Time
	ExpiresAt time.Time
}

// PasswordResets stores password resets. Deleting the user deletes them.
type PasswordResets interface {
	// CreatePasswordReset stores r (ErrNotFound when the user does not
	// exist, ErrConflict on a duplicate hash).
	CreatePasswordReset(ctx context.Context, r *PasswordReset) error
	// GetPasswordReset returns the reset without using it; an unknown,
	// used or expired (at `at`) one is ErrNotFound.
	GetPasswordReset(ctx context.Context, hash []byte, at time.Time) (*PasswordReset, error)
	// UsePasswordReset deletes the reset and returns it; an unknown, used
	// or expired (at `at`) one is ErrNotFound. Of concurrent callers
	// exactly one succeeds.
	UsePasswordReset(ctx context.Context, hash []byte, at time.Time) (*PasswordReset, error)
	// DeleteUserPasswordResets deletes every reset of the user; none is
	// not an error.
	DeleteUserPasswordResets(ctx context.Context, userID string) error
}
