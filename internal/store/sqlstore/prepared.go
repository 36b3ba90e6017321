package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// maxPrepared bounds the statements preparedReads keeps: single reads have a
// few dozen fixed texts; anything past the bound runs unprepared.
const maxPrepared = 256

// preparedReads runs the Store's single reads (outside transactions) through
// statements prepared once per query text, instead of parsing the SQL on
// every call: parsing was a sixth of the token endpoint's CPU on SQLite.
// database/sql prepares a statement again on each pool connection it lands
// on, by itself.
type preparedReads struct {
	db *sql.DB

	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

func newPreparedReads(db *sql.DB) *preparedReads {
	return &preparedReads{db: db, stmts: map[string]*sql.Stmt{}}
}

// stmt returns the prepared statement of query, or nil when it cannot be
// prepared or kept (the caller then runs the query as text).
func (p *preparedReads) stmt(ctx context.Context, query string) *sql.Stmt {
	p.mu.RLock()
	st, ok := p.stmts[query]
	p.mu.RUnlock()
	if ok {
		return st
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.stmts[query]; ok {
		return st
	}
	if len(p.stmts) >= maxPrepared {
		return nil
	}
	// Prepared without the caller's context: the statement outlives the call.
	st, err := p.db.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil // the query itself will report the error
	}
	p.stmts[query] = st
	return st
}

func (p *preparedReads) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.db.QueryRowContext(ctx, query, args...)
}

func (p *preparedReads) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.db.QueryContext(ctx, query, args...)
}

func (p *preparedReads) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return p.db.ExecContext(ctx, query, args...)
}

func (p *preparedReads) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return p.db.PrepareContext(ctx, query)
}

// close closes the statements (before the pool they were prepared on).
func (p *preparedReads) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	for q, st := range p.stmts {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		delete(p.stmts, q)
	}
	return err
}
