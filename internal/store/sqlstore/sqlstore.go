// Package sqlstore implements store.Store once, on database/sql, for every SQL
// backend: schema and migrations, filter compilation, optimistic concurrency and
// bulk inserts. It owns no connections of its own making: backends (sqlite,
// postgres) open the *sql.DB pools, classify driver errors and pick a Flavor.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Config is what a backend hands to Open.
type Config struct {
	Flavor Flavor
	// Writer runs every write transaction. For SQLite it should hold a single
	// connection opened with BEGIN IMMEDIATE transactions.
	Writer *sql.DB
	// Reader serves reads made outside WithTx; nil means Writer. SQLite uses a
	// separate pool so that reads never wait for the single writer.
	Reader *sql.DB
	// Replay runs UseOnce calls made outside a transaction: the single-use
	// records of DPoP proofs and client assertions, which live for minutes. SQLite
	// gives it a connection that commits without waiting for the disk
	// (synchronous=NORMAL in WAL mode: a crashed process loses nothing, a power
	// failure the last commits, whose proofs are stale by the time the machine
	// is back); nil means Writer.
	Replay *sql.DB
	// Changes, when set, is a pool of one connection that DataVersion asks
	// whether the database changed (SQLite: PRAGMA data_version); nil when the
	// backend cannot tell.
	Changes *sql.DB
	// ReadTx are the options of read-only transactions (List calls, which count
	// and page in one snapshot); nil for the driver's default.
	ReadTx *sql.TxOptions
	// IsUniqueViolation reports whether err is a unique-constraint violation.
	IsUniqueViolation func(err error) bool
	// IsRetryable reports whether a transaction failed with err only because of
	// concurrency (serialization failure, deadlock) and may be run again.
	IsRetryable func(err error) bool
}

// Store implements store.Store on database/sql.
type Store struct {
	cfg     Config
	reader  *sql.DB
	reads   *preparedReads // single reads on reader
	version *dataVersion   // nil without Config.Changes
}

// maxTxAttempts bounds how often WithTx re-runs a transaction that failed
// with a retryable error.
const maxTxAttempts = 8

// Open migrates the database to the current schema and returns the store. The
// Store does not own the pools: Close closes them, Open never does.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Flavor.check(); err != nil {
		return nil, err
	}
	if cfg.Writer == nil || cfg.IsUniqueViolation == nil {
		return nil, errors.New("sqlstore: Config.Writer and Config.IsUniqueViolation are required")
	}
	if cfg.IsRetryable == nil {
		cfg.IsRetryable = func(error) bool { return false }
	}
	s := &Store{cfg: cfg, reader: cfg.Reader}
	if s.reader == nil {
		s.reader = cfg.Writer
	}
	s.reads = newPreparedReads(s.reader)
	if cfg.Changes != nil {
		s.version = &dataVersion{db: cfg.Changes}
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// WithTx runs fn in one write transaction, re-running it on retryable errors.
func (s *Store) WithTx(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.withTx(ctx, func(t *txn) error { return fn(t) })
}

func (s *Store) withTx(ctx context.Context, fn func(t *txn) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = s.runTx(ctx, s.cfg.Writer, nil, fn)
		if err == nil || !s.cfg.IsRetryable(err) || attempt == maxTxAttempts {
			return err
		}
		// Back off a little, growing, so that colliding transactions spread out.
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(attempt*attempt) * time.Millisecond):
		}
	}
}

// read runs fn in a read transaction on the reader pool.
func (s *Store) read(ctx context.Context, fn func(t *txn) error) error {
	return s.runTx(ctx, s.reader, s.cfg.ReadTx, fn)
}

func (s *Store) runTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(t *txn) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the original error matters more than a rollback error
		}
	}()
	if err := fn(&txn{s: s, q: tx}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.cfg.Writer.PingContext(ctx); err != nil {
		return err
	}
	return s.reader.PingContext(ctx)
}

// Close closes the pools given in Config.
func (s *Store) Close() error {
	err := s.reads.close()
	err = errors.Join(err, s.cfg.Writer.Close())
	if s.reader != s.cfg.Writer {
		err = errors.Join(err, s.reader.Close())
	}
	if s.cfg.Replay != nil {
		err = errors.Join(err, s.cfg.Replay.Close())
	}
	if s.version != nil {
		err = errors.Join(err, s.version.close(), s.cfg.Changes.Close())
	}
	return err
}

// querier is what *sql.Tx and *sql.DB have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// txn implements store.Tx on one transaction (or, for single reads, a pool).
type txn struct {
	s *Store
	q querier
}

func (t *txn) flavor() Flavor { return t.s.cfg.Flavor }

// ph returns the n-th placeholder of the flavor.
func (t *txn) ph(n int) string { return t.flavor().placeholder(n) }

// The Store's own methods: writes run in their own write transaction, single
// reads directly on the reader pool, lists in a read transaction.

func (s *Store) single() *txn { return &txn{s: s, q: s.reads} }

// readList runs a list of one kind: the COUNT and the page in one read
// transaction, or without the COUNT one statement, a single read.
func (s *Store) readList(ctx context.Context, q store.Query, fn func(t *txn) error) error {
	if q.NoTotal {
		return fn(s.single())
	}
	return s.read(ctx, fn)
}

func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateUser(ctx, u) })
}

func (s *Store) GetUser(ctx context.Context, id string) (*store.User, error) {
	return s.single().GetUser(ctx, id)
}

func (s *Store) GetUserByName(ctx context.Context, userName string) (*store.User, error) {
	return s.single().GetUserByName(ctx, userName)
}

func (s *Store) GetUserByVerifiedEmail(ctx context.Context, email string) (*store.User, error) {
	return s.single().GetUserByVerifiedEmail(ctx, email)
}

func (s *Store) UpdateUser(ctx context.Context, id string, ifRevision int64, fn func(*store.User) error) (u *store.User, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		u, err = t.UpdateUser(ctx, id, ifRevision, fn)
		return err
	})
	return u, err
}

func (s *Store) DeleteUser(ctx context.Context, id string, ifRevision int64) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteUser(ctx, id, ifRevision) })
}

func (s *Store) ListUsers(ctx context.Context, q store.Query) (us []*store.User, total int, err error) {
	err = s.readList(ctx, q, func(t *txn) error {
		us, total, err = t.ListUsers(ctx, q)
		return err
	})
	return us, total, err
}

func (s *Store) CreateThing(ctx context.Context, th *store.Thing) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateThing(ctx, th) })
}

func (s *Store) CreateThings(ctx context.Context, things []*store.Thing) (errs []error, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		errs, err = t.CreateThings(ctx, things)
		return err
	})
	return errs, err
}

func (s *Store) GetThing(ctx context.Context, id string) (*store.Thing, error) {
	return s.single().GetThing(ctx, id)
}

func (s *Store) UpdateThing(ctx context.Context, id string, ifRevision int64, fn func(*store.Thing) error) (th *store.Thing, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		th, err = t.UpdateThing(ctx, id, ifRevision, fn)
		return err
	})
	return th, err
}

func (s *Store) DeleteThing(ctx context.Context, id string, ifRevision int64) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteThing(ctx, id, ifRevision) })
}

func (s *Store) ListThings(ctx context.Context, q store.Query) (ths []*store.Thing, total int, err error) {
	err = s.readList(ctx, q, func(t *txn) error {
		ths, total, err = t.ListThings(ctx, q)
		return err
	})
	return ths, total, err
}

func (s *Store) ListThingsWith(ctx context.Context, q store.Query, specs []store.RelSpec) ([]*store.Thing, []store.Related, error) {
	return s.single().ListThingsWith(ctx, q, specs)
}

func (s *Store) CreateGroup(ctx context.Context, g *store.Group) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateGroup(ctx, g) })
}

func (s *Store) GetGroup(ctx context.Context, id string) (g *store.Group, err error) {
	// Two statements (group and members): read them in one snapshot.
	err = s.read(ctx, func(t *txn) error {
		g, err = t.GetGroup(ctx, id)
		return err
	})
	return g, err
}

func (s *Store) UpdateGroup(ctx context.Context, id string, ifRevision int64, fn func(*store.Group) error) (g *store.Group, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		g, err = t.UpdateGroup(ctx, id, ifRevision, fn)
		return err
	})
	return g, err
}

func (s *Store) DeleteGroup(ctx context.Context, id string, ifRevision int64) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteGroup(ctx, id, ifRevision) })
}

func (s *Store) ListGroups(ctx context.Context, q store.Query) (gs []*store.Group, total int, err error) {
	err = s.read(ctx, func(t *txn) error {
		gs, total, err = t.ListGroups(ctx, q)
		return err
	})
	return gs, total, err
}

func (s *Store) AddRelationship(ctx context.Context, r store.Relationship) error {
	return s.withTx(ctx, func(t *txn) error { return t.AddRelationship(ctx, r) })
}

func (s *Store) RemoveRelationship(ctx context.Context, r store.Relationship) error {
	return s.withTx(ctx, func(t *txn) error { return t.RemoveRelationship(ctx, r) })
}

func (s *Store) ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error) {
	return s.single().ListRelationships(ctx, f)
}

func (s *Store) AppendAudit(ctx context.Context, recs ...store.AuditRecord) error {
	return s.withTx(ctx, func(t *txn) error { return t.AppendAudit(ctx, recs...) })
}

func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	return s.single().ListAudit(ctx, q)
}

func (s *Store) CreateAPIToken(ctx context.Context, tok *store.APIToken) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateAPIToken(ctx, tok) })
}

func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error) {
	return s.single().GetAPITokenByHash(ctx, hash)
}

func (s *Store) ListAPITokens(ctx context.Context, userID string) ([]*store.APIToken, error) {
	return s.single().ListAPITokens(ctx, userID)
}

func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteAPIToken(ctx, id) })
}

var (
	_ store.Store = (*Store)(nil)
	_ store.Tx    = (*txn)(nil)
)
