package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
)

// ErrNoSnapshot is Snapshot's answer on PostgreSQL: pg_dump backs it up.
var ErrNoSnapshot = errors.New("the store is PostgreSQL: back it up with pg_dump (docs/deployment.md, Backup and restore)")

// Snapshot writes a consistent copy of the SQLite database into the new file
// path while the other connections keep reading and writing: VACUUM INTO
// reads one snapshot of the database (a read transaction of the WAL), so the
// copy holds every transaction committed before it began and none after.
// path must not exist.
//
// The readers are query_only, which refuses VACUUM INTO (it writes, if only
// into another file): Snapshot lifts that on one reader connection and then
// discards the connection, so that no reader that could write returns to the
// pool.
func (s *Store) Snapshot(ctx context.Context, path string) error {
	if s.cfg.Flavor != SQLite {
		return ErrNoSnapshot
	}
	conn, err := s.reader.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: snapshot: %w", err)
	}
	defer conn.Close()
	defer conn.Raw(func(any) error { return driver.ErrBadConn })
	if _, err := conn.ExecContext(ctx, "PRAGMA query_only(0)"); err != nil {
		return fmt.Errorf("sqlite: snapshot: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("sqlite: snapshot into %s: %w", path, err)
	}
	return nil
}
