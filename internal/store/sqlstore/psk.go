package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

// PutThingPSK inserts or replaces the thing's key in one statement; the
// row read first only says whether one was replaced.
func (t *txn) PutThingPSK(ctx context.Context, k *store.ThingPSK) (bool, error) {
	if k.KeyID == "" || len(k.Sealed) == 0 {
		return false, errors.New("thing PSK: key id and sealed key are required")
	}
	if ok, err := t.exists(ctx, "things", k.ThingID); err != nil {
		return false, fmt.Errorf("thing PSK: %w", err)
	} else if !ok {
		return false, fmt.Errorf("thing PSK: thing %q: %w", k.ThingID, store.ErrNotFound)
	}
	var one int
	err := t.q.QueryRowContext(ctx, "SELECT 1 FROM thing_psks WHERE thing_id = "+t.ph(1), k.ThingID).Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("read PSK of thing %s: %w", k.ThingID, err)
	}
	replaced := err == nil
	x := *k
	x.Created = orNow(k.Created)
	if _, err := t.q.ExecContext(ctx, "INSERT INTO thing_psks (thing_id, key_id, sealed, created) VALUES "+t.placeholders(1, 4, 1)+
		" ON CONFLICT (thing_id) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed, created = excluded.created",
		x.ThingID, x.KeyID, x.Sealed, t.flavor().timeArg(x.Created)); err != nil {
		return false, fmt.Errorf("store PSK of thing %s: %w", k.ThingID, err)
	}
	*k = x
	return replaced, nil
}

func (t *txn) GetThingPSK(ctx context.Context, thingID string) (*store.ThingPSK, error) {
	var k store.ThingPSK
	err := t.q.QueryRowContext(ctx, "SELECT thing_id, key_id, sealed, created FROM thing_psks WHERE thing_id = "+t.ph(1), thingID).
		Scan(&k.ThingID, &k.KeyID, &k.Sealed, timeCol{&k.Created})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("PSK of thing %s: %w", thingID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read PSK of thing %s: %w", thingID, err)
	}
	return &k, nil
}

func (t *txn) GetThingPSKState(ctx context.Context, thingID string) (*store.ThingPSKState, error) {
	var (
		st    store.ThingPSKState
		keyID sql.NullString
		k     store.ThingPSK
	)
	err := t.q.QueryRowContext(ctx, "SELECT x.status, x.revision, p.key_id, p.sealed, p.created FROM things AS x "+
		"LEFT JOIN thing_psks AS p ON p.thing_id = x.id WHERE x.id = "+t.ph(1), thingID).
		Scan(&st.Status, &st.Revision, &keyID, &k.Sealed, timeCol{&k.Created})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("thing %s: %w", thingID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read PSK state of thing %s: %w", thingID, err)
	}
	if keyID.Valid {
		k.ThingID, k.KeyID = thingID, keyID.String
		st.Key = &k
	}
	return &st, nil
}

// The Store's own methods: writes in a write transaction, reads on the reader pool.

func (s *Store) PutThingPSK(ctx context.Context, k *store.ThingPSK) (replaced bool, err error) {
	err = s.withTx(ctx, func(t *txn) (err error) { replaced, err = t.PutThingPSK(ctx, k); return err })
	return replaced, err
}

func (s *Store) GetThingPSK(ctx context.Context, thingID string) (*store.ThingPSK, error) {
	return s.single().GetThingPSK(ctx, thingID)
}

func (s *Store) GetThingPSKState(ctx context.Context, thingID string) (*store.ThingPSKState, error) {
	return s.single().GetThingPSKState(ctx, thingID)
}
