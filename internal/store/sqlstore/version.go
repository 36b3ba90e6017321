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

var errStoreClosed = errors.New("sqlstore: data version: the store is closed")

// dataVersion asks one dedicated connection for SQLite's PRAGMA data_version:
// a number that changes, for that connection, whenever any other
// connection — of this process or another, such as the CLI — commits to the
// database. The connection is held for good: its numbers mean nothing on
// another connection, so a replaced connection starts a new epoch.
//
// Callers that arrive while a check runs share the next one, which starts
// after they arrived, so each caller still sees every commit made before it
// asked, and a busy token endpoint makes one check per burst of requests
// instead of one each.
type dataVersion struct {
	db *sql.DB

	mu      sync.Mutex
	running bool          // a check runs; its goroutine makes the queued ones too
	next    *versionCheck // what callers arriving during the running check wait for
	closed  bool
	runs    sync.WaitGroup // the goroutine making checks, for close

	// Used by the running check only.
	conn  *sql.Conn
	stmt  *sql.Stmt
	epoch uint64
}

// versionCheck is one PRAGMA data_version and the callers waiting for it.
type versionCheck struct {
	done chan struct{}
	v    uint64
	err  error
}

func (d *dataVersion) get(ctx context.Context) (uint64, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return 0, errStoreClosed
	}
	if !d.running {
		d.running = true
		d.runs.Add(1)
		d.mu.Unlock()
		c := &versionCheck{done: make(chan struct{})}
		d.run(c)
		return c.v, c.err
	}
	if d.next == nil {
		d.next = &versionCheck{done: make(chan struct{})}
	}
	c := d.next
	d.mu.Unlock()
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run makes check c, then hands the checks callers queued meanwhile to a
// goroutine of their own: the caller that started it waits for its own
// answer only.
func (d *dataVersion) run(c *versionCheck) {
	defer d.runs.Done()
	c.v, c.err = d.safeQuery()
	close(c.done)
	d.mu.Lock()
	defer d.mu.Unlock()
	next := d.next
	d.next = nil
	if next != nil && d.closed {
		next.err = errStoreClosed
		close(next.done)
		next = nil
	}
	d.running = next != nil
	if next != nil {
		d.runs.Add(1)
		go d.run(next)
	}
}

// safeQuery is query, with a panic turned into an error: waiters must
// always get an answer.
func (d *dataVersion) safeQuery() (v uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			d.closeConn()
			v, err = 0, fmt.Errorf("data version: %v", p)
		}
	}()
	return d.query()
}

func (d *dataVersion) query() (uint64, error) {
	// Not the caller's context: others may be waiting for this answer.
	ctx := context.Background()
	if d.conn == nil {
		conn, err := d.db.Conn(ctx)
		if err != nil {
			return 0, fmt.Errorf("data version: %w", err)
		}
		stmt, err := conn.PrepareContext(ctx, "PRAGMA data_version")
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
		d.closeConn()
		return 0, fmt.Errorf("data version: %w", err)
	}
	// data_version stays far below 2^32 between restarts of a connection.
	return d.epoch<<32 | v&0xffffffff, nil
}

// close waits for a running check and releases the connection; later calls
// fail.
func (d *dataVersion) close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.runs.Wait()
	return d.closeConn()
}

func (d *dataVersion) closeConn() error {
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
