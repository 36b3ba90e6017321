package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// CreateSigningKey stores k; Created defaults to now, a duplicate KID is ErrConflict.
func (t *txn) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	switch {
	case k.KID == "":
		return fmt.Errorf("signing key: KID is required")
	case k.Alg == "":
		return fmt.Errorf("signing key %s: Alg is required", k.KID)
	case len(k.Sealed) == 0:
		return fmt.Errorf("signing key %s: Sealed is required", k.KID)
	case len(k.Public) == 0:
		return fmt.Errorf("signing key %s: Public is required", k.KID)
	}
	pub, err := rawArg("signing key "+k.KID+": Public", k.Public)
	if err != nil {
		return err
	}
	x := *k
	x.Created, x.RetiredAt, x.ExpiresAt = orNow(k.Created), normOpt(k.RetiredAt), normOpt(k.ExpiresAt)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_signing_keys (kid, alg, sealed, public_jwk, created, retired_at, expires_at) VALUES "+
		t.placeholders(1, 7, 1)+" ON CONFLICT DO NOTHING",
		x.KID, x.Alg, x.Sealed, pub, f.timeArg(x.Created), f.nullTimeArg(x.RetiredAt), f.nullTimeArg(x.ExpiresAt)))
	if err != nil {
		return fmt.Errorf("create signing key %s: %w", k.KID, err)
	}
	if n == 0 {
		return fmt.Errorf("signing key kid %q: %w", k.KID, store.ErrConflict)
	}
	*k = x
	return nil
}

// ListSigningKeys returns every key, expired ones included (the caller decides
// what to sign with and what to publish), oldest first.
func (t *txn) ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT kid, alg, sealed, public_jwk, created, retired_at, expires_at FROM oauth_signing_keys ORDER BY created, kid")
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var out []*store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		if err := rows.Scan(&k.KID, &k.Alg, &k.Sealed, rawCol{&k.Public}, timeCol{&k.Created},
			timeCol{&k.RetiredAt}, timeCol{&k.ExpiresAt}); err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		out = append(out, &k)
	}
	return out, rows.Err()
}

// RetireSigningKey keeps the first RetiredAt when a key is retired twice (two
// nodes rotating at once) and sets ExpiresAt to the latest call's value.
func (t *txn) RetireSigningKey(ctx context.Context, kid string, at, expiresAt time.Time) error {
	if at.IsZero() || expiresAt.IsZero() {
		return fmt.Errorf("retire signing key %s: at and expiresAt are required", kid)
	}
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE oauth_signing_keys SET retired_at = COALESCE(retired_at, "+t.ph(1)+
		"), expires_at = "+t.ph(2)+" WHERE kid = "+t.ph(3), f.timeArg(at), f.timeArg(expiresAt), kid))
	if err != nil {
		return fmt.Errorf("retire signing key %s: %w", kid, err)
	}
	if n == 0 {
		return fmt.Errorf("signing key %s: %w", kid, store.ErrNotFound)
	}
	return nil
}
