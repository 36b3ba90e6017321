package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrate applies the embedded migrations the database has not seen yet, all in
// one transaction. Two processes opening the same database at once are
// serialized: SQLite by BEGIN IMMEDIATE on the writer, PostgreSQL by an
// advisory lock; the second one then finds the versions recorded and skips them.
func (s *Store) migrate(ctx context.Context) error {
	f := s.cfg.Flavor
	files, err := fs.Glob(f.migrations(), "*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	return s.withTx(ctx, func(t *txn) error {
		if lock := f.lockMigrations(); lock != "" {
			if _, err := t.q.ExecContext(ctx, lock); err != nil {
				return fmt.Errorf("migrations: lock: %w", err)
			}
		}
		if _, err := t.q.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT NOT NULL PRIMARY KEY,
			name    TEXT   NOT NULL,
			applied TEXT   NOT NULL
		)`); err != nil {
			return fmt.Errorf("migrations: create schema_migrations: %w", err)
		}
		applied := map[int64]bool{}
		rows, err := t.q.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return fmt.Errorf("migrations: read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			applied[v] = true
		}
		if err := rows.Close(); err != nil {
			return err
		}
		for _, name := range files {
			num, _, ok := strings.Cut(name, "_")
			version, err := strconv.ParseInt(num, 10, 64)
			if !ok || err != nil {
				return fmt.Errorf("migrations: file %s is not named NNNN_name.sql", name)
			}
			if applied[version] {
				continue
			}
			body, err := fs.ReadFile(f.migrations(), name)
			if err != nil {
				return err
			}
			if _, err := t.q.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("migrations: apply %s: %w", name, err)
			}
			if _, err := t.q.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, name, applied) VALUES (`+t.ph(1)+`, `+t.ph(2)+`, `+t.ph(3)+`)`,
				version, name, time.Now().UTC().Format(time.RFC3339)); err != nil {
				return fmt.Errorf("migrations: record %s: %w", name, err)
			}
		}
		return nil
	})
}
