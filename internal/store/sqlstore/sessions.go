package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

const sessionColumns = "hash, user_id, created, auth_time, last_seen, expires_at, remote_ip, user_agent"

func scanSession(s scanner) (*store.Session, error) {
	var x store.Session
	err := s.Scan(&x.Hash, &x.UserID, timeCol{&x.Created}, timeCol{&x.AuthTime}, timeCol{&x.LastSeen},
		timeCol{&x.ExpiresAt}, &x.RemoteIP, &x.UserAgent)
	return &x, err
}

// CreateSession stores s; Created defaults to now. A session must expire.
func (t *txn) CreateSession(ctx context.Context, s *store.Session) error {
	if err := checkHash("session", s.Hash); err != nil {
		return err
	}
	if err := checkExpiry("session", s.ExpiresAt); err != nil {
		return err
	}
	if s.UserID == "" {
		return errors.New("session: UserID is required")
	}
	x := *s
	x.Created, x.AuthTime, x.LastSeen, x.ExpiresAt = orNow(s.Created), normOpt(s.AuthTime), normOpt(s.LastSeen), normTime(s.ExpiresAt)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_sessions ("+sessionColumns+") VALUES "+
		t.placeholders(1, 8, 1)+" ON CONFLICT DO NOTHING",
		x.Hash, x.UserID, f.timeArg(x.Created), f.nullTimeArg(x.AuthTime), f.nullTimeArg(x.LastSeen),
		f.timeArg(x.ExpiresAt), x.RemoteIP, x.UserAgent))
	if err != nil {
		return fmt.Errorf("create session of user %s: %w", s.UserID, err)
	}
	if n == 0 {
		return fmt.Errorf("session hash: %w", store.ErrConflict)
	}
	*s = x
	return nil
}

func (t *txn) GetSession(ctx context.Context, hash []byte) (*store.Session, error) {
	s, err := scanSession(t.q.QueryRowContext(ctx, "SELECT "+sessionColumns+" FROM oauth_sessions WHERE hash = "+t.ph(1)+
		" AND expires_at > "+t.ph(2), hash, t.flavor().timeArg(now())))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	return s, nil
}

// TouchSession records activity at `at` on a live session; it never moves
// LastSeen back (two nodes may touch out of order).
func (t *txn) TouchSession(ctx context.Context, hash []byte, at time.Time) error {
	if err := checkAt("touch session", at); err != nil {
		return err
	}
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE oauth_sessions SET last_seen = "+t.ph(1)+
		" WHERE hash = "+t.ph(2)+" AND expires_at > "+t.ph(3)+" AND (last_seen IS NULL OR last_seen < "+t.ph(1)+")",
		f.timeArg(at), hash, f.timeArg(now())))
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	if n == 0 {
		// Either already touched later (fine) or missing or expired.
		if _, err := t.GetSession(ctx, hash); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) DeleteSession(ctx context.Context, hash []byte) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM oauth_sessions WHERE hash = "+t.ph(1), hash))
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("session: %w", store.ErrNotFound)
	}
	return nil
}

// ListSessions returns the user's live sessions, oldest first.
func (t *txn) ListSessions(ctx context.Context, userID string) ([]*store.Session, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT "+sessionColumns+" FROM oauth_sessions WHERE user_id = "+t.ph(1)+
		" AND expires_at > "+t.ph(2)+" ORDER BY created, hash", userID, t.flavor().timeArg(now()))
	if err != nil {
		return nil, fmt.Errorf("list sessions of user %s: %w", userID, err)
	}
	defer rows.Close()
	var out []*store.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("list sessions of user %s: %w", userID, err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteUserSessions signs the user out everywhere; no sessions is not an error.
func (t *txn) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := t.q.ExecContext(ctx, "DELETE FROM oauth_sessions WHERE user_id = "+t.ph(1), userID); err != nil {
		return fmt.Errorf("delete sessions of user %s: %w", userID, err)
	}
	return nil
}
