package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"
)

// Past maxPrepared texts, and for SQL that does not prepare, queries still
// run (unprepared) and answer the same.
func TestPreparedReadsBound(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	p := newPreparedReads(db)
	defer p.close()
	for i := range maxPrepared + 10 {
		var n int
		if err := p.QueryRowContext(ctx, fmt.Sprintf("SELECT %d + ?", i), 1).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("query %d: %d %v", i, n, err)
		}
	}
	if len(p.stmts) != maxPrepared {
		t.Fatalf("%d statements kept, want %d", len(p.stmts), maxPrepared)
	}
	// Kept statements are reused.
	var n int
	if err := p.QueryRowContext(ctx, "SELECT 0 + ?", 41).Scan(&n); err != nil || n != 41 {
		t.Fatalf("reused statement: %d %v", n, err)
	}
	if err := p.QueryRowContext(ctx, "SELEC nonsense").Scan(&n); err == nil {
		t.Fatal("bad SQL answered")
	}
	if err := p.close(); err != nil || len(p.stmts) != 0 {
		t.Fatalf("close: %v, %d left", err, len(p.stmts))
	}
}
