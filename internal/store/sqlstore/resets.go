package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

const resetColumns = "hash, user_id, created, expires_at"

func scanReset(s scanner) (*store.PasswordReset, error) {
	var r store.PasswordReset
	err := s.Scan(&r.Hash, &r.UserID, timeCol{&r.Created}, timeCol{&r.ExpiresAt})
	return &r, err
}

// CreatePasswordReset stores r; Created defaults to now. A reset must expire.
func (t *txn) CreatePasswordReset(ctx context.Context, r *store.PasswordReset) error {
	if err := checkHash("password reset", r.Hash); err != nil {
		return err
	}
	if err := checkExpiry("password reset", r.ExpiresAt); err != nil {
		return err
	}
	if ok, err := t.exists(ctx, "users", r.UserID); err != nil {
		return fmt.Errorf("password reset: %w", err)
	} else if !ok {
		return fmt.Errorf("password reset: user %q: %w", r.UserID, store.ErrNotFound)
	}
	x := *r
	x.Created, x.ExpiresAt = orNow(r.Created), normTime(r.ExpiresAt)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO password_resets ("+resetColumns+") VALUES "+
		t.placeholders(1, 4, 1)+" ON CONFLICT DO NOTHING", x.Hash, x.UserID, f.timeArg(x.Created), f.timeArg(x.ExpiresAt)))
	if err != nil {
		return fmt.Errorf("create password reset of user %s: %w", r.UserID, err)
	}
	if n == 0 {
		return fmt.Errorf("password reset hash: %w", store.ErrConflict)
	}
	*r = x
	return nil
}

func (t *txn) GetPasswordReset(ctx context.Context, hash []byte, at time.Time) (*store.PasswordReset, error) {
	if err := checkAt("read password reset", at); err != nil {
		return nil, err
	}
	r, err := scanReset(t.q.QueryRowContext(ctx, "SELECT "+resetColumns+" FROM password_resets WHERE hash = "+t.ph(1)+
		" AND expires_at > "+t.ph(2), hash, t.flavor().timeArg(at)))
	return resetResult(r, err, "read")
}

// UsePasswordReset deletes the live reset in one statement, so that of two
// concurrent uses only one gets the row.
func (t *txn) UsePasswordReset(ctx context.Context, hash []byte, at time.Time) (*store.PasswordReset, error) {
	if err := checkAt("use password reset", at); err != nil {
		return nil, err
	}
	r, err := scanReset(t.q.QueryRowContext(ctx, "DELETE FROM password_resets WHERE hash = "+t.ph(1)+
		" AND expires_at > "+t.ph(2)+" RETURNING "+resetColumns, hash, t.flavor().timeArg(at)))
	return resetResult(r, err, "use")
}

func resetResult(r *store.PasswordReset, err error, verb string) (*store.PasswordReset, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("password reset: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s password reset: %w", verb, err)
	}
	return r, nil
}

func (t *txn) DeleteUserPasswordResets(ctx context.Context, userID string) error {
	if _, err := t.q.ExecContext(ctx, "DELETE FROM password_resets WHERE user_id = "+t.ph(1), userID); err != nil {
		return fmt.Errorf("delete password resets of user %s: %w", userID, err)
	}
	return nil
}

// The Store's own methods: writes in a write transaction, reads on the reader pool.

func (s *Store) CreatePasswordReset(ctx context.Context, r *store.PasswordReset) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreatePasswordReset(ctx, r) })
}

func (s *Store) GetPasswordReset(ctx context.Context, hash []byte, at time.Time) (*store.PasswordReset, error) {
	return s.single().GetPasswordReset(ctx, hash, at)
}

func (s *Store) UsePasswordReset(ctx context.Context, hash []byte, at time.Time) (*store.PasswordReset, error) {
	var r *store.PasswordReset
	err := s.withTx(ctx, func(t *txn) (err error) { r, err = t.UsePasswordReset(ctx, hash, at); return err })
	return r, err
}

func (s *Store) DeleteUserPasswordResets(ctx context.Context, userID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteUserPasswordResets(ctx, userID) })
}
