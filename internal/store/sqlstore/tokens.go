package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

func (t *txn) CreateAPIToken(ctx context.Context, tok *store.APIToken) error {
	id, created := tok.ID, now()
	if id == "" {
		id = newID()
	}
	if !tok.Created.IsZero() {
		created = normTime(tok.Created)
	}
	if len(tok.Hash) == 0 {
		return fmt.Errorf("api token %q: empty hash", tok.Name)
	}
	f := t.flavor()
	res, err := t.q.ExecContext(ctx, "INSERT INTO api_tokens (id, name, hash, user_id, created, expires_at) VALUES "+
		t.placeholders(1, 6, 1)+" ON CONFLICT DO NOTHING",
		id, tok.Name, tok.Hash, tok.UserID, f.timeArg(created), f.nullTimeArg(tok.ExpiresAt))
	if err != nil {
		return fmt.Errorf("create api token %q: %w", tok.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		if ok, err := t.exists(ctx, "api_tokens", id); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("api token id %q: %w", id, store.ErrConflict)
		}
		return fmt.Errorf("api token %q: hash: %w", tok.Name, store.ErrConflict)
	}
	tok.ID, tok.Created = id, created
	if !tok.ExpiresAt.IsZero() {
		tok.ExpiresAt = normTime(tok.ExpiresAt)
	}
	return nil
}

func (t *txn) GetAPITokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error) {
	var tok store.APIToken
	err := t.q.QueryRowContext(ctx, "SELECT id, name, hash, user_id, created, expires_at FROM api_tokens WHERE hash = "+t.ph(1), hash).
		Scan(&tok.ID, &tok.Name, &tok.Hash, &tok.UserID, timeCol{&tok.Created}, timeCol{&tok.ExpiresAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("api token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get api token: %w", err)
	}
	return &tok, nil
}

func (t *txn) ListAPITokens(ctx context.Context, userID string) ([]*store.APIToken, error) {
	query, args := "SELECT id, name, hash, user_id, created, expires_at FROM api_tokens", []any{}
	if userID != "" {
		query, args = query+" WHERE user_id = "+t.ph(1), append(args, userID)
	}
	rows, err := t.q.QueryContext(ctx, query+" ORDER BY created, id", args...)
	if err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	defer rows.Close()
	var out []*store.APIToken
	for rows.Next() {
		var tok store.APIToken
		if err := rows.Scan(&tok.ID, &tok.Name, &tok.Hash, &tok.UserID, timeCol{&tok.Created}, timeCol{&tok.ExpiresAt}); err != nil {
			return nil, fmt.Errorf("list api tokens: %w", err)
		}
		out = append(out, &tok)
	}
	return out, rows.Err()
}

func (t *txn) DeleteAPIToken(ctx context.Context, id string) error {
	res, err := t.q.ExecContext(ctx, "DELETE FROM api_tokens WHERE id = "+t.ph(1), id)
	if err != nil {
		return fmt.Errorf("delete api token %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("api token %s: %w", id, store.ErrNotFound)
	}
	return nil
}
