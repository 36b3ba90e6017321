package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// The Store's own OAuth methods, as for identities: writes (including the
// one-time uses) in their own write transaction, single reads on the reader pool.

func (s *Store) CreateSession(ctx context.Context, x *store.Session) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateSession(ctx, x) })
}

func (s *Store) GetSession(ctx context.Context, hash []byte) (*store.Session, error) {
	return s.single().GetSession(ctx, hash)
}

func (s *Store) TouchSession(ctx context.Context, hash []byte, at time.Time) error {
	return s.withTx(ctx, func(t *txn) error { return t.TouchSession(ctx, hash, at) })
}

func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteSession(ctx, hash) })
}

func (s *Store) ListSessions(ctx context.Context, userID string) ([]*store.Session, error) {
	return s.single().ListSessions(ctx, userID)
}

func (s *Store) DeleteUserSessions(ctx context.Context, userID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteUserSessions(ctx, userID) })
}

func (s *Store) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateSigningKey(ctx, k) })
}

func (s *Store) ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error) {
	return s.single().ListSigningKeys(ctx)
}

func (s *Store) RetireSigningKey(ctx context.Context, kid string, at, expiresAt time.Time) error {
	return s.withTx(ctx, func(t *txn) error { return t.RetireSigningKey(ctx, kid, at, expiresAt) })
}

func (s *Store) UseOnce(ctx context.Context, key string, expiresAt time.Time) error {
	use := func(t *txn) error { return t.UseOnce(ctx, key, expiresAt) }
	if s.cfg.Replay != nil {
		return s.runTx(ctx, s.cfg.Replay, nil, use)
	}
	return s.withTx(ctx, use)
}

func (s *Store) AddFailure(ctx context.Context, key string, at time.Time, window time.Duration) (count int, since time.Time, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		count, since, err = t.AddFailure(ctx, key, at, window)
		return err
	})
	return count, since, err
}

func (s *Store) GetFailures(ctx context.Context, key string, at time.Time, window time.Duration) (int, time.Time, error) {
	return s.single().GetFailures(ctx, key, at, window)
}

func (s *Store) ResetFailures(ctx context.Context, key string) error {
	return s.withTx(ctx, func(t *txn) error { return t.ResetFailures(ctx, key) })
}

func (s *Store) CreateClient(ctx context.Context, c *store.Client) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateClient(ctx, c) })
}

func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	return s.single().GetClient(ctx, id)
}

func (s *Store) UpdateClient(ctx context.Context, id string, ifRevision int64, fn func(*store.Client) error) (c *store.Client, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		c, err = t.UpdateClient(ctx, id, ifRevision, fn)
		return err
	})
	return c, err
}

func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteClient(ctx, id) })
}

func (s *Store) ListClients(ctx context.Context, offset, limit int) (cs []*store.Client, total int, err error) {
	err = s.read(ctx, func(t *txn) error {
		cs, total, err = t.ListClients(ctx, offset, limit)
		return err
	})
	return cs, total, err
}

func (s *Store) CreateGrant(ctx context.Context, g *store.Grant) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateGrant(ctx, g) })
}

func (s *Store) GetRefreshToken(ctx context.Context, hash []byte, at time.Time) (*store.RefreshToken, error) {
	return s.single().GetRefreshToken(ctx, hash, at)
}

func (s *Store) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	return s.single().GetGrant(ctx, id)
}

func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter) ([]*store.Grant, error) {
	return s.single().ListGrants(ctx, f)
}

func (s *Store) Standing(ctx context.Context, k store.StandingKeys) (store.Standing, error) {
	return s.single().Standing(ctx, k)
}

func (s *Store) RevokedGrantsSince(ctx context.Context, since time.Time) (map[string]time.Time, error) {
	return s.single().RevokedGrantsSince(ctx, since)
}

func (s *Store) RevokeGrant(ctx context.Context, id string, at time.Time) error {
	return s.withTx(ctx, func(t *txn) error { return t.RevokeGrant(ctx, id, at) })
}

func (s *Store) TouchGrant(ctx context.Context, id string, at time.Time) error {
	return s.withTx(ctx, func(t *txn) error { return t.TouchGrant(ctx, id, at) })
}

func (s *Store) CreateRefreshToken(ctx context.Context, r *store.RefreshToken) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateRefreshToken(ctx, r) })
}

// UseRefreshToken commits the use even when it reports ErrUsed (nothing was
// written then), so the caller gets the token back to revoke its grant.
func (s *Store) UseRefreshToken(ctx context.Context, hash []byte, at time.Time) (r *store.RefreshToken, err error) {
	var used error
	err = s.withTx(ctx, func(t *txn) error {
		r, used = t.UseRefreshToken(ctx, hash, at)
		if errors.Is(used, store.ErrUsed) {
			return nil
		}
		return used
	})
	if err != nil {
		return nil, err
	}
	return r, used
}

func (s *Store) CreateAuthCode(ctx context.Context, c *store.AuthCode) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateAuthCode(ctx, c) })
}

// UseAuthCode: see UseRefreshToken.
func (s *Store) UseAuthCode(ctx context.Context, hash []byte, at time.Time) (c *store.AuthCode, err error) {
	var used error
	err = s.withTx(ctx, func(t *txn) error {
		c, used = t.UseAuthCode(ctx, hash, at)
		if errors.Is(used, store.ErrUsed) {
			return nil
		}
		return used
	})
	if err != nil {
		return nil, err
	}
	return c, used
}

func (s *Store) CreateDeviceCode(ctx context.Context, d *store.DeviceCode) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateDeviceCode(ctx, d) })
}

func (s *Store) GetDeviceCode(ctx context.Context, hash []byte) (*store.DeviceCode, error) {
	return s.single().GetDeviceCode(ctx, hash)
}

func (s *Store) GetDeviceCodeByUserCode(ctx context.Context, userCode string) (*store.DeviceCode, error) {
	return s.single().GetDeviceCodeByUserCode(ctx, userCode)
}

func (s *Store) UpdateDeviceCode(ctx context.Context, hash []byte, fn func(*store.DeviceCode) error) (d *store.DeviceCode, err error) {
	err = s.withTx(ctx, func(t *txn) error {
		d, err = t.UpdateDeviceCode(ctx, hash, fn)
		return err
	})
	return d, err
}

func (s *Store) PutConsent(ctx context.Context, c *store.Consent) error {
	return s.withTx(ctx, func(t *txn) error { return t.PutConsent(ctx, c) })
}

func (s *Store) GetConsent(ctx context.Context, userID, clientID string) (*store.Consent, error) {
	return s.single().GetConsent(ctx, userID, clientID)
}

func (s *Store) DeleteConsent(ctx context.Context, userID, clientID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteConsent(ctx, userID, clientID) })
}

var (
	_ store.OAuth = (*Store)(nil)
	_ store.OAuth = (*txn)(nil)
)
