package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"
)

// Snapshot lifts query_only on the reader connection it uses: that
// connection must never serve a read again, or a read could write. After
// more snapshots than the pool has connections, every reader still refuses
// a write, and each copy opens with the table in it.
func TestSnapshotLeavesReadersReadOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	writer, err := sql.Open("sqlite", path+"?_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	if _, err := writer.Exec("CREATE TABLE t(a); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	reader, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	const pool = 2
	reader.SetMaxOpenConns(pool)
	reader.SetMaxIdleConns(pool)
	s := &Store{cfg: Config{Flavor: SQLite}, reader: reader}
	ctx := context.Background()
	for i := range pool + 1 {
		copyPath := filepath.Join(dir, fmt.Sprintf("copy%d", i))
		if err := s.Snapshot(ctx, copyPath); err != nil {
			t.Fatal(err)
		}
		c, err := sql.Open("sqlite", copyPath)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
			t.Errorf("copy %d: %d rows, %v", i, n, err)
		}
		c.Close()
	}
	conns := make([]*sql.Conn, pool)
	for i := range conns {
		if conns[i], err = reader.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	for i, c := range conns {
		if _, err := c.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err == nil {
			t.Errorf("reader connection %d wrote after the snapshots", i)
		}
	}
	pg := &Store{cfg: Config{Flavor: Postgres}}
	if err := pg.Snapshot(ctx, filepath.Join(dir, "pg")); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("Snapshot on PostgreSQL: %v", err)
	}
}
