// Package postgres is the scale-out store backend: PostgreSQL through pgx's
// database/sql driver, so that sqlstore's SQL serves it as well as SQLite. It
// only opens the pool and classifies errors; several nodes may share one database.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlstore"
)

// Open connects to dsn (a URL or key=value string; search_path in it selects
// the schema), migrates the schema and returns the store.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s, err := sqlstore.Open(ctx, sqlstore.Config{
		Flavor: sqlstore.Postgres,
		Writer: db,
		// Count and page of a List see one snapshot.
		ReadTx:            &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
		IsUniqueViolation: func(err error) bool { return code(err) == "23505" },
		IsRetryable: func(err error) bool {
			c := code(err)
			return c == "40001" || c == "40P01" // serialization_failure, deadlock_detected
		},
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

func code(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
