package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Replay and Counters are single-statement upserts, so that concurrent callers
// on any number of nodes are serialized by the row itself.

// UseOnce inserts key, or takes over its row when the recorded one expired;
// a live row means the key was used.
func (t *txn) UseOnce(ctx context.Context, key string, expiresAt time.Time) error {
	if key == "" {
		return errors.New("replay: empty key")
	}
	if err := checkExpiry("replay "+key, expiresAt); err != nil {
		return err
	}
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_replay (id, expires_at) VALUES ("+t.ph(1)+", "+t.ph(2)+
		") ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at WHERE oauth_replay.expires_at <= "+t.ph(3),
		key, f.timeArg(expiresAt), f.timeArg(now())))
	if err != nil {
		return fmt.Errorf("replay %q: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("replay %q: %w", key, store.ErrUsed)
	}
	return nil
}

// AddFailure counts one failure; the window restarts at `at` once `window`
// passed since it started.
func (t *txn) AddFailure(ctx context.Context, key string, at time.Time, window time.Duration) (int, time.Time, error) {
	if window <= 0 {
		return 0, time.Time{}, fmt.Errorf("failures of %q: window must be positive", key)
	}
	if err := checkAt("failures of "+key, at); err != nil {
		return 0, time.Time{}, err
	}
	f := t.flavor()
	var (
		count int
		since time.Time
	)
	// In an UPDATE, both dialects evaluate every SET expression on the old row.
	err := t.q.QueryRowContext(ctx, "INSERT INTO oauth_failures (id, failures, since) VALUES ("+t.ph(1)+", 1, "+t.ph(2)+
		") ON CONFLICT (id) DO UPDATE SET"+
		" failures = CASE WHEN oauth_failures.since <= "+t.ph(3)+" THEN 1 ELSE oauth_failures.failures + 1 END,"+
		" since = CASE WHEN oauth_failures.since <= "+t.ph(3)+" THEN excluded.since ELSE oauth_failures.since END"+
		" RETURNING failures, since",
		key, f.timeArg(at), f.timeArg(at.Add(-window))).Scan(&count, timeCol{&since})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("add failure of %q: %w", key, err)
	}
	return count, since, nil
}

func (t *txn) GetFailures(ctx context.Context, key string, at time.Time, window time.Duration) (int, time.Time, error) {
	var (
		count int
		since time.Time
	)
	err := t.q.QueryRowContext(ctx, "SELECT failures, since FROM oauth_failures WHERE id = "+t.ph(1)+
		" AND since > "+t.ph(2), key, t.flavor().timeArg(at.Add(-window))).Scan(&count, timeCol{&since})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("get failures of %q: %w", key, err)
	}
	return count, since, nil
}

func (t *txn) ResetFailures(ctx context.Context, key string) error {
	if _, err := t.q.ExecContext(ctx, "DELETE FROM oauth_failures WHERE id = "+t.ph(1), key); err != nil {
		return fmt.Errorf("reset failures of %q: %w", key, err)
	}
	return nil
}
