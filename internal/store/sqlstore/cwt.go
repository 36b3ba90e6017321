package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// maxCTI bounds a cti: the platform's are 16 bytes.
const maxCTI = 64

func (t *txn) RevokeCWT(ctx context.Context, r *store.RevokedCWT) error {
	if len(r.CTI) == 0 || len(r.CTI) > maxCTI {
		return fmt.Errorf("revoke CWT: cti must be 1 to %d bytes", maxCTI)
	}
	if r.ExpiresAt.IsZero() {
		return errors.New("revoke CWT: expires_at is required")
	}
	x := *r
	x.Revoked = orNow(r.Revoked)
	f := t.flavor()
	if _, err := t.q.ExecContext(ctx, "INSERT INTO revoked_cwts (cti, expires_at, revoked) VALUES "+t.placeholders(1, 3, 1)+
		" ON CONFLICT (cti) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > revoked_cwts.expires_at"+
		" THEN excluded.expires_at ELSE revoked_cwts.expires_at END",
		x.CTI, f.timeArg(x.ExpiresAt), f.timeArg(x.Revoked)); err != nil {
		return fmt.Errorf("revoke CWT: %w", err)
	}
	*r = x
	return nil
}

func (t *txn) ListRevokedCWTs(ctx context.Context, now time.Time) ([]store.RevokedCWT, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT cti, expires_at, revoked FROM revoked_cwts WHERE expires_at > "+t.ph(1)+" ORDER BY cti",
		t.flavor().timeArg(now))
	if err != nil {
		return nil, fmt.Errorf("revoked CWTs: %w", err)
	}
	defer rows.Close()
	var out []store.RevokedCWT
	for rows.Next() {
		var r store.RevokedCWT
		if err := rows.Scan(&r.CTI, timeCol{&r.ExpiresAt}, timeCol{&r.Revoked}); err != nil {
			return nil, fmt.Errorf("revoked CWTs: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// The Store's own methods: writes in a write transaction, reads on the reader pool.

func (s *Store) RevokeCWT(ctx context.Context, r *store.RevokedCWT) error {
	return s.withTx(ctx, func(t *txn) error { return t.RevokeCWT(ctx, r) })
}

func (s *Store) ListRevokedCWTs(ctx context.Context, now time.Time) ([]store.RevokedCWT, error) {
	return s.single().ListRevokedCWTs(ctx, now)
}
