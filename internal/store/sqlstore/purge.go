package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// failureRetention keeps failure counters this long after their window began;
// every window in use (sign-in back-off, user-code attempts) is far shorter.
const failureRetention = 24 * time.Hour

// PurgeExpired deletes what expired before `before`: sessions, authorization
// codes, device codes, replay records, refresh tokens, UMA tickets and
// persisted claims tokens, password resets, revoked CWTs past their exp, old failure counters, and on SQLite the event log's old events.
func (s *Store) PurgeExpired(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	err := s.withTx(ctx, func(t *txn) error {
		total = 0
		f := t.flavor()
		for _, q := range []struct {
			table, cond string
			at          time.Time
		}{
			{"oauth_sessions", "expires_at < ", before},
			{"oauth_auth_codes", "expires_at < ", before},
			{"oauth_device_codes", "expires_at < ", before},
			{"oauth_replay", "expires_at < ", before},
			{"oauth_refresh_tokens", "expires_at IS NOT NULL AND expires_at < ", before},
			{"uma_tickets", "expires_at < ", before},
			{"uma_pcts", "expires_at < ", before},
			{"password_resets", "expires_at < ", before},
			{"revoked_cwts", "expires_at < ", before},
			{"oauth_failures", "since < ", before.Add(-failureRetention)},
			{"event_log", "created < ", before.Add(-eventRetention)},
		} {
			if q.table == "event_log" && f != SQLite {
				continue // SQLite's only
			}
			n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM "+q.table+" WHERE "+q.cond+t.ph(1), f.timeArg(q.at)))
			if err != nil {
				return fmt.Errorf("purge %s: %w", q.table, err)
			}
			total += n
		}
		return nil
	})
	return total, err
}
