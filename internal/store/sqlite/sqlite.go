// Package sqlite is the embedded store backend: a single SQLite file through
// modernc.org/sqlite (pure Go). It only opens connections and classifies
// errors; all SQL lives in sqlstore.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlstore"
)

func init() {
	// SQLite's lower() folds ASCII only; case-insensitive filters must agree
	// with the unique columns that Go lower-cases.
	sqlite.MustRegisterDeterministicScalarFunction(sqlstore.LowerFunc, 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return strings.ToLower(v), nil
		case []byte:
			return strings.ToLower(string(v)), nil
		}
		return args[0], nil
	})
}

// Open opens (creating it 0600 if needed) and migrates the database file at path.
func Open(path string) (store.Store, error) {
	if path == "" || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: %q: need a plain file path (the store opens it from several connections)", path)
	}
	// SQLite creates the -wal and -shm files with the mode of the database
	// file, so creating it 0600 first keeps all three private.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	common := url.Values{}
	common.Add("_pragma", "busy_timeout(10000)") // first: the others may need to wait for another process
	common.Add("_pragma", "foreign_keys(1)")
	common.Add("_pragma", "synchronous(FULL)") // an acknowledged write survives power loss
	// LIKE is case-sensitive, as in PostgreSQL; case-insensitive fields are
	// lower-cased on both sides.
	common.Add("_pragma", "case_sensitive_like(1)")
	common.Add("_pragma", "cache_size(-32768)") // 32 MiB per connection
	// Reads map the file (up to 1 GiB of address space, shared by every
	// connection through the OS's page cache) instead of copying each
	// page a connection's own cache misses: an indexed lookup in a large
	// store (the directory's search by serial number or mail over 100,000
	// entries) costs about a third less CPU (docs/performance.md).
	common.Add("_pragma", "mmap_size(1073741824)")

	w := url.Values{}
	for k, v := range common {
		w[k] = append([]string(nil), v...)
	}
	w.Add("_pragma", "journal_mode(WAL)")
	// BEGIN IMMEDIATE takes the write lock when the transaction starts, so two
	// writers (two processes) queue on busy_timeout instead of deadlocking
	// when both try to upgrade a read lock.
	w.Set("_txlock", "immediate")
	writer, err := sql.Open("sqlite", path+"?"+w.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// One writer connection: SQLite has one write lock per database anyway, and
	// queueing in the pool is cheaper than spinning on SQLITE_BUSY.
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	// Single-use records of short-lived proofs need not wait for the disk
	// (sqlstore.Config.Replay); the writer's next commit makes them durable.
	r := url.Values{}
	for k, v := range w {
		r[k] = append([]string(nil), v...)
	}
	r["_pragma"] = slices.DeleteFunc(r["_pragma"], func(p string) bool { return strings.HasPrefix(p, "synchronous(") })
	r.Add("_pragma", "synchronous(NORMAL)")
	replay, err := sql.Open("sqlite", path+"?"+r.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	replay.SetMaxOpenConns(1)
	replay.SetMaxIdleConns(1)
	replay.SetConnMaxLifetime(0)
	replay.SetConnMaxIdleTime(0)

	common.Add("_pragma", "query_only(1)")
	reader, err := sql.Open("sqlite", path+"?"+common.Encode())
	if err != nil {
		writer.Close()
		replay.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// WAL readers do not block the writer or each other.
	n := max(4, runtime.NumCPU())
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)

	// One connection that only ever asks PRAGMA data_version
	// (sqlstore.Config.Changes), so that it sees every other commit.
	changes, err := sql.Open("sqlite", path+"?"+common.Encode())
	if err != nil {
		writer.Close()
		replay.Close()
		reader.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	changes.SetMaxOpenConns(1)
	changes.SetMaxIdleConns(1)
	changes.SetConnMaxLifetime(0)
	changes.SetConnMaxIdleTime(0)

	// Two processes opening a fresh file at once can get SQLITE_BUSY without the
	// busy handler being consulted (switching to WAL needs an exclusive lock), so
	// opening and migrating is retried for as long as busy_timeout would wait.
	var s store.Store
	for deadline := time.Now().Add(10 * time.Second); ; {
		s, err = sqlstore.Open(context.Background(), sqlstore.Config{
			Flavor:            sqlstore.SQLite,
			Writer:            writer,
			Reader:            reader,
			Replay:            replay,
			Changes:           changes,
			IsUniqueViolation: isUniqueViolation,
		})
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Duration(20+mathrand.IntN(80)) * time.Millisecond)
	}
	if err != nil {
		writer.Close()
		replay.Close()
		reader.Close()
		changes.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return s, nil
}

func isBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}

func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}
