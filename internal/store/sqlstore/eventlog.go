package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// eventRetention is how long event_log keeps an event: every relay reads the
// table several times a second.
const eventRetention = 10 * time.Minute

// ErrNoEventLog is returned by the event log methods on backends without one
// (PostgreSQL, whose relay uses NOTIFY).
var ErrNoEventLog = errors.New("sqlstore: this backend has no event log")

// AppendEvents appends payloads to the event log in one transaction, on the
// connection that commits without waiting for the disk (Config.Replay):
// events are prompts to react, not records.
func (s *Store) AppendEvents(ctx context.Context, payloads [][]byte) error {
	if s.cfg.Flavor != SQLite {
		return ErrNoEventLog
	}
	db := s.cfg.Writer
	if s.cfg.Replay != nil {
		db = s.cfg.Replay
	}
	now := s.cfg.Flavor.timeArg(time.Now())
	return s.runTx(ctx, db, nil, func(t *txn) error {
		for _, p := range payloads {
			if _, err := t.q.ExecContext(ctx, "INSERT INTO event_log (created, payload) VALUES (?, ?)", now, string(p)); err != nil {
				return fmt.Errorf("append event: %w", err)
			}
		}
		return nil
	})
}

// EventsAfter returns up to limit events with a sequence number above seq,
// oldest first.
func (s *Store) EventsAfter(ctx context.Context, seq int64, limit int) ([]store.EventRecord, error) {
	if s.cfg.Flavor != SQLite {
		return nil, ErrNoEventLog
	}
	rows, err := s.reads.QueryContext(ctx, "SELECT seq, payload FROM event_log WHERE seq > ? ORDER BY seq LIMIT ?", seq, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []store.EventRecord
	for rows.Next() {
		var e store.EventRecord
		var payload string
		if err := rows.Scan(&e.Seq, &payload); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		e.Payload = []byte(payload)
		out = append(out, e)
	}
	return out, rows.Err()
}

// LastEventSeq returns the sequence number of the newest event, 0 if none.
func (s *Store) LastEventSeq(ctx context.Context) (int64, error) {
	if s.cfg.Flavor != SQLite {
		return 0, ErrNoEventLog
	}
	var seq int64
	// sqlite_sequence remembers the highest seq ever given, even once purged.
	err := s.reads.QueryRowContext(ctx, "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'event_log'), 0)").Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("read events: %w", err)
	}
	return seq, nil
}
