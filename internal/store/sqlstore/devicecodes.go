package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

const deviceColumns = "hash, user_code, client_id, scopes, created, expires_at, interval_ns, last_polled, status, user_id, grant_id, revision, resources"

func scanDevice(s scanner) (*store.DeviceCode, error) {
	var (
		d        store.DeviceCode
		interval int64
	)
	err := s.Scan(&d.Hash, &d.UserCode, &d.ClientID, listCol{&d.Scopes}, timeCol{&d.Created}, timeCol{&d.ExpiresAt},
		&interval, timeCol{&d.LastPolled}, &d.Status, &d.UserID, &d.GrantID, &d.Revision, listCol{&d.Resources})
	d.Interval = time.Duration(interval)
	return &d, err
}

func validDeviceStatus(s store.DeviceCodeStatus) bool {
	switch s {
	case store.DevicePending, store.DeviceApproved, store.DeviceDenied, store.DeviceUsed:
		return true
	}
	return false
}

// CreateDeviceCode stores d with Revision 1; Created defaults to now and
// Status to pending. A user code held by an expired request is taken over.
func (t *txn) CreateDeviceCode(ctx context.Context, d *store.DeviceCode) error {
	if err := checkHash("device code", d.Hash); err != nil {
		return err
	}
	if err := checkExpiry("device code", d.ExpiresAt); err != nil {
		return err
	}
	if d.UserCode == "" || d.ClientID == "" {
		return errors.New("device code: UserCode and ClientID are required")
	}
	x := *d
	if x.Status == "" {
		x.Status = store.DevicePending
	}
	if !validDeviceStatus(x.Status) {
		return fmt.Errorf("device code: unknown Status %q", x.Status)
	}
	x.Created, x.ExpiresAt, x.LastPolled, x.Revision = orNow(d.Created), normTime(d.ExpiresAt), normOpt(d.LastPolled), 1
	f := t.flavor()
	// The unique index covers all rows; an expiry cannot be part of an index
	// predicate, so the expired holder of the code goes first.
	if _, err := t.q.ExecContext(ctx, "DELETE FROM oauth_device_codes WHERE user_code = "+t.ph(1)+" AND expires_at <= "+t.ph(2),
		x.UserCode, f.timeArg(now())); err != nil {
		return fmt.Errorf("create device code: %w", err)
	}
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_device_codes ("+deviceColumns+") VALUES "+
		t.placeholders(1, 13, 1)+" ON CONFLICT DO NOTHING",
		x.Hash, x.UserCode, x.ClientID, listArg(x.Scopes), f.timeArg(x.Created), f.timeArg(x.ExpiresAt), int64(x.Interval),
		f.nullTimeArg(x.LastPolled), string(x.Status), x.UserID, x.GrantID, x.Revision, listArg(x.Resources)))
	if err != nil {
		return fmt.Errorf("create device code of client %s: %w", d.ClientID, err)
	}
	if n == 0 {
		return fmt.Errorf("device code: user code or hash: %w", store.ErrConflict)
	}
	*d = x
	return nil
}

func (t *txn) getDevice(ctx context.Context, col string, arg any, lock bool) (*store.DeviceCode, error) {
	q := "SELECT " + deviceColumns + " FROM oauth_device_codes WHERE " + col + " = " + t.ph(1) + " AND expires_at > " + t.ph(2)
	if lock {
		q += t.flavor().forUpdate()
	}
	d, err := scanDevice(t.q.QueryRowContext(ctx, q, arg, t.flavor().timeArg(now())))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("device code: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get device code: %w", err)
	}
	return d, nil
}

func (t *txn) GetDeviceCode(ctx context.Context, hash []byte) (*store.DeviceCode, error) {
	return t.getDevice(ctx, "hash", hash, false)
}

// GetDeviceCodeByUserCode looks the code up exactly: normalizing what the user
// typed is the caller's job.
func (t *txn) GetDeviceCodeByUserCode(ctx context.Context, userCode string) (*store.DeviceCode, error) {
	return t.getDevice(ctx, "user_code", userCode, false)
}

// UpdateDeviceCode is the optimistic-concurrency loop of the identity updates
// on Revision: fn is re-run on a concurrent change. fn may change Scopes,
// Interval, LastPolled, Status, UserID and GrantID; the rest (Resources
// among it) is restored.
func (t *txn) UpdateDeviceCode(ctx context.Context, hash []byte, fn func(*store.DeviceCode) error) (*store.DeviceCode, error) {
	f := t.flavor()
	for attempt := 1; ; attempt++ {
		d, err := t.getDevice(ctx, "hash", hash, true)
		if err != nil {
			return nil, err
		}
		prev := *d
		if err := fn(d); err != nil {
			return nil, err
		}
		if !validDeviceStatus(d.Status) {
			return nil, fmt.Errorf("device code: unknown Status %q", d.Status)
		}
		d.Hash, d.UserCode, d.ClientID, d.Created, d.ExpiresAt = prev.Hash, prev.UserCode, prev.ClientID, prev.Created, prev.ExpiresAt
		d.Resources = prev.Resources
		d.Revision, d.LastPolled = prev.Revision+1, normOpt(d.LastPolled)
		n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE oauth_device_codes SET scopes = "+t.ph(1)+", interval_ns = "+t.ph(2)+
			", last_polled = "+t.ph(3)+", status = "+t.ph(4)+", user_id = "+t.ph(5)+", grant_id = "+t.ph(6)+
			", revision = "+t.ph(7)+" WHERE hash = "+t.ph(8)+" AND revision = "+t.ph(9),
			listArg(d.Scopes), int64(d.Interval), f.nullTimeArg(d.LastPolled), string(d.Status), d.UserID, d.GrantID,
			d.Revision, prev.Hash, prev.Revision))
		if err != nil {
			return nil, fmt.Errorf("update device code: %w", err)
		}
		if n == 1 {
			return d, nil
		}
		if attempt == maxUpdateAttempts {
			return nil, fmt.Errorf("device code: changed concurrently: %w", store.ErrStale)
		}
	}
}
