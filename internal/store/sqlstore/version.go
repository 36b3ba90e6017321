package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// ErrNoDataVersion is returned by DataVersion when the backend cannot tell
// cheaply whether the database changed.
var ErrNoDataVersion = errors.New("sqlstore: this backend has no data version")

// dataVersion asks one dedicated connection for SQLite's PRAGMA data_version:
// a number that changes, for that connection, whenever any other
// connection — of this process or another, such as the CLI — commits to the
// database. The connection is held for good: its numbers mean nothing on
// another connection, so a replaced connection starts a new epoch.
type dataVersion struct {
	db *sql.DB

	mu    sync.Mutex
	conn  *sql.Conn
	stmt  *sql.Stmt
	epoch uint64
}

func (d *dataVersion) get(ctx context.Context) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		conn, err := d.db.Conn(context.WithoutCancel(ctx))
		if err != nil {
			return 0, fmt.Errorf("data version: %w", err)
		}
		stmt, err := conn.PrepareContext(context.WithoutCancel(ctx), "PRAGMA data_version")
		if err != nil {
			conn.Close()
			return 0, fmt.Errorf("data version: %w", err)
		}
		d.conn, d.stmt = conn, stmt
		d.epoch++
	}
	var v uint64
	if err := d.stmt.QueryRowContext(ctx).Scan(&v); err != nil {
		// Begin again on a fresh connection, whose numbers are another epoch's.
		d.closeLocked()
		return 0, fmt.Errorf("data version: %w", err)
	}
	// data_version stays far below 2^32 between restarts of a connection.
	return d.epoch<<32 | v&0xffffffff, nil
}

func (d *dataVersion) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closeLocked()
}

func (d *dataVersion) closeLocked() error {
	if d.conn == nil {
		return nil
	}
	err := errors.Join(d.stmt.Close(), d.conn.Close())
	d.conn, d.stmt = nil, nil
	return err
}

// DataVersion returns a number that differs from every earlier one it
// returned once anything was committed to the database since, by any
// connection or process. Callers may keep what they read while the number
// stays the same. ErrNoDataVersion when the backend has none (PostgreSQL).
func (s *Store) DataVersion(ctx context.Context) (uint64, error) {
	if s.version == nil {
		return 0, ErrNoDataVersion
	}
	return s.version.get(ctx)
}
