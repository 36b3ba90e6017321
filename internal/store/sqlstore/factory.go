package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

const batchColumns = "b.id, b.created, b.actor, b.model, b.manufacturer, b.planned, b.issued, b.first_serial, b.last_serial, " +
	"b.ca_subject, b.ca_fingerprint, b.validity_seconds"

func scanBatch(s scanner) (*store.FactoryBatch, error) {
	var (
		b        store.FactoryBatch
		validity int64
	)
	if err := s.Scan(&b.ID, timeCol{&b.Created}, &b.Actor, &b.Model, &b.Manufacturer, &b.Count, &b.Issued, &b.FirstSerial,
		&b.LastSerial, &b.CASubject, &b.CAFingerprint, &validity); err != nil {
		return nil, err
	}
	b.Validity = time.Duration(validity) * time.Second
	return &b, nil
}

func (t *txn) PutFactoryBatch(ctx context.Context, b *store.FactoryBatch) error {
	if strings.TrimSpace(b.Model) == "" || b.Count < 0 || b.Validity < 0 {
		return fmt.Errorf("put factory batch: model is required, count and validity must not be negative")
	}
	x := *b
	if x.ID == "" {
		x.ID = newID()
	}
	x.Created = orNow(b.Created)
	if _, err := t.q.ExecContext(ctx, "INSERT INTO factory_batches (id, created, actor, model, manufacturer, planned, "+
		"first_serial, last_serial, ca_subject, ca_fingerprint, validity_seconds) VALUES "+t.placeholders(1, 11, 1)+
		" ON CONFLICT (id) DO UPDATE SET planned = excluded.planned, first_serial = excluded.first_serial, last_serial = excluded.last_serial",
		x.ID, t.flavor().timeArg(x.Created), x.Actor, x.Model, x.Manufacturer, x.Count, x.FirstSerial, x.LastSerial,
		x.CASubject, x.CAFingerprint, int64(x.Validity/time.Second)); err != nil {
		return fmt.Errorf("put factory batch: %w", err)
	}
	stored, err := t.GetFactoryBatch(ctx, x.ID)
	if err != nil {
		return err
	}
	*b = *stored
	return nil
}

func (t *txn) GetFactoryBatch(ctx context.Context, id string) (*store.FactoryBatch, error) {
	b, err := scanBatch(t.q.QueryRowContext(ctx, "SELECT "+batchColumns+" FROM factory_batches AS b WHERE b.id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("factory batch %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read factory batch: %w", err)
	}
	return b, nil
}

func (t *txn) ListFactoryBatches(ctx context.Context, offset, limit int) ([]*store.FactoryBatch, int, error) {
	if offset < 0 || limit < 0 {
		return nil, 0, fmt.Errorf("list factory batches: offset and limit must not be negative: %w", store.ErrInvalidQuery)
	}
	var total int
	if err := t.q.QueryRowContext(ctx, "SELECT count(*) FROM factory_batches").Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list factory batches: %w", err)
	}
	rows, err := t.q.QueryContext(ctx, "SELECT "+batchColumns+" FROM factory_batches AS b ORDER BY b.created DESC, b.id DESC LIMIT "+
		t.ph(1)+" OFFSET "+t.ph(2), limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list factory batches: %w", err)
	}
	defer rows.Close()
	var out []*store.FactoryBatch
	for rows.Next() {
		b, err := scanBatch(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list factory batches: %w", err)
		}
		out = append(out, b)
	}
	return out, total, rows.Err()
}

// batchChunk bounds the ids of one statement.
const batchChunk = 500

func (t *txn) AddFactoryBatchThings(ctx context.Context, batchID string, thingIDs []string) error {
	if ok, err := t.exists(ctx, "factory_batches", batchID); err != nil {
		return fmt.Errorf("add to factory batch: %w", err)
	} else if !ok {
		return fmt.Errorf("factory batch %q: %w", batchID, store.ErrNotFound)
	}
	var added int64
	for start := 0; start < len(thingIDs); start += batchChunk {
		part := thingIDs[start:min(start+batchChunk, len(thingIDs))]
		args := make([]any, 0, len(part)+1)
		args = append(args, batchID)
		in := make([]string, len(part))
		for i, id := range part {
			args = append(args, id)
			in[i] = t.ph(i + 2)
		}
		// Only stored things: the SELECT reads them, so an unknown id is
		// found missing below rather than by the driver's foreign key error.
		n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO factory_batch_things (batch_id, thing_id) SELECT "+t.ph(1)+
			", x.id FROM things AS x WHERE x.id IN ("+strings.Join(in, ", ")+") ON CONFLICT DO NOTHING", args...))
		if err != nil {
			return fmt.Errorf("add to factory batch %s: %w", batchID, err)
		}
		if int(n) < len(part) {
			if err := t.missingThing(ctx, part); err != nil {
				return err
			}
		}
		added += n
	}
	if _, err := t.q.ExecContext(ctx, "UPDATE factory_batches SET issued = issued + "+t.ph(1)+" WHERE id = "+t.ph(2), added, batchID); err != nil {
		return fmt.Errorf("add to factory batch %s: %w", batchID, err)
	}
	return nil
}

// missingThing returns ErrNotFound naming the first of ids that is no
// stored thing, nil when all are (they were in the batch already).
func (t *txn) missingThing(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if ok, err := t.exists(ctx, "things", id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("thing %q: %w", id, store.ErrNotFound)
		}
	}
	return nil
}

// ListFactoryBatchThings orders the things by id: ids are UUIDv7, so that
// is the order the factory made them in, read along the primary key.
func (t *txn) ListFactoryBatchThings(ctx context.Context, batchID string, offset, limit int) ([]*store.Thing, int, error) {
	if offset < 0 || limit < 0 {
		return nil, 0, fmt.Errorf("list factory batch things: offset and limit must not be negative: %w", store.ErrInvalidQuery)
	}
	if ok, err := t.exists(ctx, "factory_batches", batchID); err != nil {
		return nil, 0, fmt.Errorf("list factory batch things: %w", err)
	} else if !ok {
		return nil, 0, fmt.Errorf("factory batch %q: %w", batchID, store.ErrNotFound)
	}
	var total int
	if err := t.q.QueryRowContext(ctx, "SELECT count(*) FROM factory_batch_things WHERE batch_id = "+t.ph(1), batchID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list factory batch things: %w", err)
	}
	rows, err := t.q.QueryContext(ctx, "SELECT "+thingColumns+" FROM factory_batch_things AS m JOIN things AS x ON x.id = m.thing_id "+
		"WHERE m.batch_id = "+t.ph(1)+" ORDER BY m.thing_id LIMIT "+t.ph(2)+" OFFSET "+t.ph(3), batchID, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("list factory batch things: %w", err)
	}
	defer rows.Close()
	var out []*store.Thing
	for rows.Next() {
		th, err := scanThing(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list factory batch things: %w", err)
		}
		out = append(out, th)
	}
	return out, total, rows.Err()
}

func (t *txn) ThingFactoryBatches(ctx context.Context, thingID string) ([]*store.FactoryBatch, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT "+batchColumns+" FROM factory_batches AS b JOIN factory_batch_things AS bt ON bt.batch_id = b.id"+
		" WHERE bt.thing_id = "+t.ph(1)+" ORDER BY b.created, b.id", thingID)
	if err != nil {
		return nil, fmt.Errorf("a thing's factory batches: %w", err)
	}
	defer rows.Close()
	var out []*store.FactoryBatch
	for rows.Next() {
		b, err := scanBatch(rows)
		if err != nil {
			return nil, fmt.Errorf("a thing's factory batches: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (t *txn) CountThingsOfCAs(ctx context.Context, cas []*store.ManufacturerCA) (map[string]int, error) {
	out := make(map[string]int, len(cas))
	for _, ca := range cas {
		var n int
		if err := t.q.QueryRowContext(ctx, "SELECT count(DISTINCT thing_id) FROM thing_certificates WHERE issuer = "+t.ph(1)+
			" OR ca_id = "+t.ph(2), ca.Subject, ca.ID).Scan(&n); err != nil {
			return nil, fmt.Errorf("count the things of a CA: %w", err)
		}
		out[ca.ID] = n
	}
	return out, nil
}

// The Store's own methods.

func (s *Store) PutFactoryBatch(ctx context.Context, b *store.FactoryBatch) error {
	return s.withTx(ctx, func(t *txn) error { return t.PutFactoryBatch(ctx, b) })
}

func (s *Store) GetFactoryBatch(ctx context.Context, id string) (*store.FactoryBatch, error) {
	return s.single().GetFactoryBatch(ctx, id)
}

func (s *Store) ListFactoryBatches(ctx context.Context, offset, limit int) (bs []*store.FactoryBatch, total int, err error) {
	err = s.read(ctx, func(t *txn) error {
		bs, total, err = t.ListFactoryBatches(ctx, offset, limit)
		return err
	})
	return bs, total, err
}

func (s *Store) AddFactoryBatchThings(ctx context.Context, batchID string, thingIDs []string) error {
	return s.withTx(ctx, func(t *txn) error { return t.AddFactoryBatchThings(ctx, batchID, thingIDs) })
}

func (s *Store) ListFactoryBatchThings(ctx context.Context, batchID string, offset, limit int) (ths []*store.Thing, total int, err error) {
	err = s.read(ctx, func(t *txn) error {
		ths, total, err = t.ListFactoryBatchThings(ctx, batchID, offset, limit)
		return err
	})
	return ths, total, err
}

func (s *Store) ThingFactoryBatches(ctx context.Context, thingID string) (bs []*store.FactoryBatch, err error) {
	err = s.read(ctx, func(t *txn) error {
		bs, err = t.ThingFactoryBatches(ctx, thingID)
		return err
	})
	return bs, err
}

func (s *Store) CountThingsOfCAs(ctx context.Context, cas []*store.ManufacturerCA) (n map[string]int, err error) {
	err = s.read(ctx, func(t *txn) error {
		n, err = t.CountThingsOfCAs(ctx, cas)
		return err
	})
	return n, err
}
