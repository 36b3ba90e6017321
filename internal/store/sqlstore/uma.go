package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// UMA 2.0 tables (migration 0009_uma).

const umaResourceColumns = "id, owner_id, client_id, name, type, icon_uri, description, scopes, created, modified"

func scanUMAResource(s scanner) (*store.UMAResource, error) {
	var r store.UMAResource
	err := s.Scan(&r.ID, &r.OwnerID, &r.ClientID, &r.Name, &r.Type, &r.IconURI, &r.Description, listCol{&r.Scopes},
		timeCol{&r.Created}, timeCol{&r.Modified})
	return &r, err
}

func (t *txn) CreateUMAResource(ctx context.Context, r *store.UMAResource) error {
	if r.OwnerID == "" || r.ClientID == "" {
		return errors.New("uma resource: OwnerID and ClientID are required")
	}
	x := *r
	if x.ID == "" {
		x.ID = newID()
	}
	x.Created = orNow(r.Created)
	x.Modified = x.Created
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO uma_resources ("+umaResourceColumns+") VALUES "+
		t.placeholders(1, 10, 1)+" ON CONFLICT DO NOTHING",
		x.ID, x.OwnerID, x.ClientID, x.Name, x.Type, x.IconURI, x.Description, listArg(x.Scopes), f.timeArg(x.Created), f.timeArg(x.Modified)))
	if err != nil {
		return fmt.Errorf("create uma resource: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("uma resource %q: %w", x.ID, store.ErrConflict)
	}
	*r = x
	return nil
}

func (t *txn) GetUMAResource(ctx context.Context, id string) (*store.UMAResource, error) {
	r, err := scanUMAResource(t.q.QueryRowContext(ctx, "SELECT "+umaResourceColumns+" FROM uma_resources WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("uma resource %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get uma resource %s: %w", id, err)
	}
	return r, nil
}

func (t *txn) UpdateUMAResource(ctx context.Context, r *store.UMAResource) error {
	mod := now()
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE uma_resources SET name = "+t.ph(1)+", type = "+t.ph(2)+
		", icon_uri = "+t.ph(3)+", description = "+t.ph(4)+", scopes = "+t.ph(5)+", modified = "+t.ph(6)+" WHERE id = "+t.ph(7),
		r.Name, r.Type, r.IconURI, r.Description, listArg(r.Scopes), t.flavor().timeArg(mod), r.ID))
	if err != nil {
		return fmt.Errorf("update uma resource %s: %w", r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("uma resource %s: %w", r.ID, store.ErrNotFound)
	}
	r.Modified = mod
	return nil
}

func (t *txn) DeleteUMAResource(ctx context.Context, id string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM uma_resources WHERE id = "+t.ph(1), id))
	if err != nil {
		return fmt.Errorf("delete uma resource %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("uma resource %s: %w", id, store.ErrNotFound)
	}
	for _, q := range []string{
		"DELETE FROM uma_shares WHERE resource_id = " + t.ph(1),
		"DELETE FROM uma_requests WHERE resource_id = " + t.ph(1),
	} {
		if _, err := t.q.ExecContext(ctx, q, id); err != nil {
			return fmt.Errorf("delete uma resource %s: %w", id, err)
		}
	}
	return nil
}

// where appends "AND col = ?" for each non-empty value.
func (t *txn) where(q string, conds ...[2]string) (string, []any) {
	var args []any
	for _, c := range conds {
		if c[1] != "" {
			args = append(args, c[1])
			q += " AND " + c[0] + " = " + t.ph(len(args))
		}
	}
	return q, args
}

func (t *txn) ListUMAResources(ctx context.Context, f store.UMAResourceFilter) ([]*store.UMAResource, error) {
	q, args := t.where("SELECT "+umaResourceColumns+" FROM uma_resources WHERE 1 = 1",
		[2]string{"owner_id", f.OwnerID}, [2]string{"client_id", f.ClientID})
	return queryAll(ctx, t, q+" ORDER BY created, id", args, scanUMAResource)
}

func queryAll[T any](ctx context.Context, t *txn, q string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := t.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

const umaTicketColumns = "hash, client_id, requester, party, permissions, created, expires_at, used_at"

func scanUMATicket(s scanner) (*store.UMATicket, error) {
	var x store.UMATicket
	var perms []byte
	var raw any
	if err := s.Scan(&x.Hash, &x.ClientID, &x.Requester, &x.Party, &raw, timeCol{&x.Created}, timeCol{&x.ExpiresAt}, timeCol{&x.UsedAt}); err != nil {
		return nil, err
	}
	switch v := raw.(type) {
	case string:
		perms = []byte(v)
	case []byte:
		perms = v
	}
	if err := json.Unmarshal(perms, &x.Permissions); err != nil {
		return nil, fmt.Errorf("uma ticket permissions: %w", err)
	}
	return &x, nil
}

func (t *txn) CreateUMATicket(ctx context.Context, x *store.UMATicket) error {
	if len(x.Hash) == 0 || x.ClientID == "" || x.ExpiresAt.IsZero() {
		return errors.New("uma ticket: Hash, ClientID and ExpiresAt are required")
	}
	perms, err := json.Marshal(x.Permissions)
	if err != nil {
		return err
	}
	x.Created = orNow(x.Created)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO uma_tickets ("+umaTicketColumns+") VALUES "+t.placeholders(1, 8, 1)+
		" ON CONFLICT DO NOTHING", x.Hash, x.ClientID, x.Requester, x.Party, string(perms), f.timeArg(x.Created), f.timeArg(x.ExpiresAt), nil))
	if err != nil {
		return fmt.Errorf("create uma ticket: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("uma ticket: %w", store.ErrConflict)
	}
	return nil
}

func (t *txn) UseUMATicket(ctx context.Context, hash []byte, at time.Time) (*store.UMATicket, error) {
	if err := checkAt("use uma ticket", at); err != nil {
		return nil, err
	}
	x, err := scanUMATicket(t.q.QueryRowContext(ctx, "UPDATE uma_tickets SET used_at = "+t.ph(2)+
		" WHERE hash = "+t.ph(1)+" AND used_at IS NULL RETURNING "+umaTicketColumns, hash, t.flavor().timeArg(at)))
	if err == nil {
		return x, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("use uma ticket: %w", err)
	}
	if x, err = t.GetUMATicket(ctx, hash); err != nil {
		return nil, err
	}
	return x, fmt.Errorf("uma ticket of client %s: %w", x.ClientID, store.ErrUsed)
}

func (t *txn) GetUMATicket(ctx context.Context, hash []byte) (*store.UMATicket, error) {
	x, err := scanUMATicket(t.q.QueryRowContext(ctx, "SELECT "+umaTicketColumns+" FROM uma_tickets WHERE hash = "+t.ph(1), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("uma ticket: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get uma ticket: %w", err)
	}
	return x, nil
}

const umaShareColumns = "id, resource_id, owner_id, grantee_kind, grantee_id, scopes, expires_at, created, conditions"

func scanUMAShare(s scanner) (*store.UMAShare, error) {
	var x store.UMAShare
	var kind string
	err := s.Scan(&x.ID, &x.ResourceID, &x.OwnerID, &kind, &x.Grantee.ID, listCol{&x.Scopes}, timeCol{&x.ExpiresAt}, timeCol{&x.Created}, rawCol{&x.Conditions})
	x.Grantee.Kind = store.Kind(kind)
	return &x, err
}

func (t *txn) CreateUMAShare(ctx context.Context, x *store.UMAShare) error {
	if x.ResourceID == "" || x.OwnerID == "" || x.Grantee.ID == "" {
		return errors.New("uma share: ResourceID, OwnerID and Grantee are required")
	}
	c := *x
	if c.ID == "" {
		c.ID = newID()
	}
	c.Created, c.ExpiresAt = orNow(x.Created), normOpt(x.ExpiresAt)
	cond, err := rawArg("uma share conditions", c.Conditions)
	if err != nil {
		return err
	}
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO uma_shares ("+umaShareColumns+") VALUES "+t.placeholders(1, 9, 1)+
		" ON CONFLICT DO NOTHING", c.ID, c.ResourceID, c.OwnerID, string(c.Grantee.Kind), c.Grantee.ID, listArg(c.Scopes),
		f.nullTimeArg(c.ExpiresAt), f.timeArg(c.Created), cond))
	if err != nil {
		return fmt.Errorf("create uma share: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("uma share %q: %w", c.ID, store.ErrConflict)
	}
	*x = c
	return nil
}

func (t *txn) GetUMAShare(ctx context.Context, id string) (*store.UMAShare, error) {
	x, err := scanUMAShare(t.q.QueryRowContext(ctx, "SELECT "+umaShareColumns+" FROM uma_shares WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("uma share %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get uma share %s: %w", id, err)
	}
	return x, nil
}

func (t *txn) ListUMAShares(ctx context.Context, f store.UMAShareFilter) ([]*store.UMAShare, error) {
	var kind, id string
	if f.Grantee != nil {
		kind, id = string(f.Grantee.Kind), f.Grantee.ID
	}
	q, args := t.where("SELECT "+umaShareColumns+" FROM uma_shares WHERE 1 = 1",
		[2]string{"owner_id", f.OwnerID}, [2]string{"resource_id", f.ResourceID}, [2]string{"grantee_kind", kind}, [2]string{"grantee_id", id})
	return queryAll(ctx, t, q+" ORDER BY created, id", args, scanUMAShare)
}

func (t *txn) SetUMAShareConditions(ctx context.Context, id string, conditions json.RawMessage) error {
	cond, err := rawArg("uma share conditions", conditions)
	if err != nil {
		return err
	}
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE uma_shares SET conditions = "+t.ph(1)+" WHERE id = "+t.ph(2), cond, id))
	if err != nil {
		return fmt.Errorf("set uma share %s conditions: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("uma share %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (t *txn) DeleteUMAShare(ctx context.Context, id string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM uma_shares WHERE id = "+t.ph(1), id))
	if err != nil {
		return fmt.Errorf("delete uma share %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("uma share %s: %w", id, store.ErrNotFound)
	}
	return nil
}

const umaRequestColumns = "id, resource_id, owner_id, requester_id, client_id, scopes, status, created, decided"

func scanUMARequest(s scanner) (*store.UMARequest, error) {
	var x store.UMARequest
	var status string
	err := s.Scan(&x.ID, &x.ResourceID, &x.OwnerID, &x.RequesterID, &x.ClientID, listCol{&x.Scopes}, &status, timeCol{&x.Created}, timeCol{&x.Decided})
	x.Status = store.UMARequestStatus(status)
	return &x, err
}

func (t *txn) CreateUMARequest(ctx context.Context, x *store.UMARequest) error {
	if x.ResourceID == "" || x.OwnerID == "" || x.RequesterID == "" {
		return errors.New("uma request: ResourceID, OwnerID and RequesterID are required")
	}
	c := *x
	if c.ID == "" {
		c.ID = newID()
	}
	if c.Status == "" {
		c.Status = store.UMAPending
	}
	c.Created, c.Decided = orNow(x.Created), normOpt(x.Decided)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO uma_requests ("+umaRequestColumns+") VALUES "+t.placeholders(1, 9, 1)+
		" ON CONFLICT DO NOTHING", c.ID, c.ResourceID, c.OwnerID, c.RequesterID, c.ClientID, listArg(c.Scopes), string(c.Status),
		f.timeArg(c.Created), f.nullTimeArg(c.Decided)))
	if err != nil {
		return fmt.Errorf("create uma request: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("uma request %q: %w", c.ID, store.ErrConflict)
	}
	*x = c
	return nil
}

func (t *txn) GetUMARequest(ctx context.Context, id string) (*store.UMARequest, error) {
	x, err := scanUMARequest(t.q.QueryRowContext(ctx, "SELECT "+umaRequestColumns+" FROM uma_requests WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("uma request %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get uma request %s: %w", id, err)
	}
	return x, nil
}

func (t *txn) DecideUMARequest(ctx context.Context, id string, status store.UMARequestStatus, at time.Time) error {
	if err := checkAt("decide uma request", at); err != nil {
		return err
	}
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE uma_requests SET status = "+t.ph(1)+", decided = "+t.ph(2)+
		" WHERE id = "+t.ph(3)+" AND status = "+t.ph(4), string(status), t.flavor().timeArg(at), id, string(store.UMAPending)))
	if err != nil {
		return fmt.Errorf("decide uma request %s: %w", id, err)
	}
	if n == 0 {
		if ok, err := t.exists(ctx, "uma_requests", id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("uma request %s: %w", id, store.ErrNotFound)
		}
		return fmt.Errorf("uma request %s was decided already: %w", id, store.ErrConflict)
	}
	return nil
}

func (t *txn) ListUMARequests(ctx context.Context, f store.UMARequestFilter) ([]*store.UMARequest, error) {
	q, args := t.where("SELECT "+umaRequestColumns+" FROM uma_requests WHERE 1 = 1",
		[2]string{"owner_id", f.OwnerID}, [2]string{"requester_id", f.RequesterID}, [2]string{"resource_id", f.ResourceID}, [2]string{"status", string(f.Status)})
	return queryAll(ctx, t, q+" ORDER BY created, id", args, scanUMARequest)
}

func (t *txn) CreateUMAPCT(ctx context.Context, p *store.UMAPCT) error {
	if len(p.Hash) == 0 || p.UserID == "" || p.ExpiresAt.IsZero() {
		return errors.New("uma pct: Hash, UserID and ExpiresAt are required")
	}
	p.Created = orNow(p.Created)
	f := t.flavor()
	_, err := t.q.ExecContext(ctx, "INSERT INTO uma_pcts (hash, client_id, user_id, created, expires_at) VALUES "+t.placeholders(1, 5, 1),
		p.Hash, p.ClientID, p.UserID, f.timeArg(p.Created), f.timeArg(p.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create uma pct: %w", err)
	}
	return nil
}

func (t *txn) GetUMAPCT(ctx context.Context, hash []byte, at time.Time) (*store.UMAPCT, error) {
	var p store.UMAPCT
	err := t.q.QueryRowContext(ctx, "SELECT hash, client_id, user_id, created, expires_at FROM uma_pcts WHERE hash = "+t.ph(1)+
		" AND expires_at > "+t.ph(2), hash, t.flavor().timeArg(at)).Scan(&p.Hash, &p.ClientID, &p.UserID, timeCol{&p.Created}, timeCol{&p.ExpiresAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("uma pct: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get uma pct: %w", err)
	}
	return &p, nil
}

func (t *txn) LinkUMAGrant(ctx context.Context, grantID, shareID string) error {
	_, err := t.q.ExecContext(ctx, "INSERT INTO uma_grant_shares (grant_id, share_id) VALUES ("+t.ph(1)+", "+t.ph(2)+") ON CONFLICT DO NOTHING", grantID, shareID)
	if err != nil {
		return fmt.Errorf("link uma grant: %w", err)
	}
	return nil
}

func (t *txn) ListUMAShareGrants(ctx context.Context, shareID string) ([]string, error) {
	return queryAll(ctx, t, "SELECT grant_id FROM uma_grant_shares WHERE share_id = "+t.ph(1)+" ORDER BY grant_id", []any{shareID},
		func(s scanner) (string, error) {
			var id string
			err := s.Scan(&id)
			return id, err
		})
}

// The Store's own UMA methods.

func (s *Store) CreateUMAResource(ctx context.Context, r *store.UMAResource) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateUMAResource(ctx, r) })
}

func (s *Store) GetUMAResource(ctx context.Context, id string) (*store.UMAResource, error) {
	return s.single().GetUMAResource(ctx, id)
}

func (s *Store) UpdateUMAResource(ctx context.Context, r *store.UMAResource) error {
	return s.withTx(ctx, func(t *txn) error { return t.UpdateUMAResource(ctx, r) })
}

func (s *Store) DeleteUMAResource(ctx context.Context, id string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteUMAResource(ctx, id) })
}

func (s *Store) ListUMAResources(ctx context.Context, f store.UMAResourceFilter) ([]*store.UMAResource, error) {
	return s.single().ListUMAResources(ctx, f)
}

func (s *Store) CreateUMATicket(ctx context.Context, x *store.UMATicket) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateUMATicket(ctx, x) })
}

func (s *Store) GetUMATicket(ctx context.Context, hash []byte) (*store.UMATicket, error) {
	return s.single().GetUMATicket(ctx, hash)
}

func (s *Store) UseUMATicket(ctx context.Context, hash []byte, at time.Time) (x *store.UMATicket, err error) {
	var used error
	err = s.withTx(ctx, func(t *txn) error {
		x, used = t.UseUMATicket(ctx, hash, at)
		if errors.Is(used, store.ErrUsed) {
			return nil
		}
		return used
	})
	if err != nil {
		return nil, err
	}
	return x, used
}

func (s *Store) CreateUMAShare(ctx context.Context, x *store.UMAShare) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateUMAShare(ctx, x) })
}

func (s *Store) GetUMAShare(ctx context.Context, id string) (*store.UMAShare, error) {
	return s.single().GetUMAShare(ctx, id)
}

func (s *Store) ListUMAShares(ctx context.Context, f store.UMAShareFilter) ([]*store.UMAShare, error) {
	return s.single().ListUMAShares(ctx, f)
}

func (s *Store) SetUMAShareConditions(ctx context.Context, id string, conditions json.RawMessage) error {
	return s.withTx(ctx, func(t *txn) error { return t.SetUMAShareConditions(ctx, id, conditions) })
}

func (s *Store) DeleteUMAShare(ctx context.Context, id string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteUMAShare(ctx, id) })
}

func (s *Store) CreateUMARequest(ctx context.Context, x *store.UMARequest) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateUMARequest(ctx, x) })
}

func (s *Store) GetUMARequest(ctx context.Context, id string) (*store.UMARequest, error) {
	return s.single().GetUMARequest(ctx, id)
}

func (s *Store) DecideUMARequest(ctx context.Context, id string, status store.UMARequestStatus, at time.Time) error {
	return s.withTx(ctx, func(t *txn) error { return t.DecideUMARequest(ctx, id, status, at) })
}

func (s *Store) ListUMARequests(ctx context.Context, f store.UMARequestFilter) ([]*store.UMARequest, error) {
	return s.single().ListUMARequests(ctx, f)
}

func (s *Store) CreateUMAPCT(ctx context.Context, p *store.UMAPCT) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateUMAPCT(ctx, p) })
}

func (s *Store) GetUMAPCT(ctx context.Context, hash []byte, at time.Time) (*store.UMAPCT, error) {
	return s.single().GetUMAPCT(ctx, hash, at)
}

func (s *Store) LinkUMAGrant(ctx context.Context, grantID, shareID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.LinkUMAGrant(ctx, grantID, shareID) })
}

func (s *Store) ListUMAShareGrants(ctx context.Context, shareID string) ([]string, error) {
	return s.single().ListUMAShareGrants(ctx, shareID)
}
