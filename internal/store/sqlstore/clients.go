package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

// clientDoc is the JSON document of a client: its lists.
type clientDoc struct {
	RedirectURIs []string `json:"redirectUris,omitempty"`
	GrantTypes   []string `json:"grantTypes,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	// Resources is absent for clients registered without (every resource).
	Resources        []string `json:"resources,omitempty"`
	DefaultResources []string `json:"defaultResources,omitempty"`
}

const (
	clientColumns = "id, name, client_type, secret_hash, auth_method, thing_id, disabled, created, modified, revision, doc, jwks"
	clientCols    = 12
)

func scanClient(s scanner) (*store.Client, error) {
	var (
		c   store.Client
		doc []byte
	)
	if err := s.Scan(&c.ID, &c.Name, &c.Type, &c.SecretHash, &c.TokenEndpointAuthMethod, &c.ThingID, &c.Disabled,
		timeCol{&c.Created}, timeCol{&c.Modified}, &c.Revision, &doc, rawCol{&c.JWKS}); err != nil {
		return nil, err
	}
	var d clientDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("client %s: document: %w", c.ID, err)
	}
	c.RedirectURIs, c.GrantTypes, c.Scopes = d.RedirectURIs, d.GrantTypes, d.Scopes
	c.Resources, c.DefaultResources = d.Resources, d.DefaultResources
	return &c, nil
}

// clientArgs validates c and returns its bind values in clientColumns order.
func (t *txn) clientArgs(c *store.Client) ([]any, error) {
	switch c.Type {
	case store.ClientConfidential, store.ClientPublic:
	default:
		return nil, fmt.Errorf("client %s: Type %q is neither %q nor %q", c.ID, c.Type, store.ClientConfidential, store.ClientPublic)
	}
	jwks, err := rawArg("client "+c.ID+": JWKS", c.JWKS)
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(clientDoc{RedirectURIs: c.RedirectURIs, GrantTypes: c.GrantTypes, Scopes: c.Scopes,
		Resources: c.Resources, DefaultResources: c.DefaultResources})
	if err != nil {
		return nil, fmt.Errorf("client %s: %w", c.ID, err)
	}
	f := t.flavor()
	return []any{c.ID, c.Name, string(c.Type), bytesArg(c.SecretHash), c.TokenEndpointAuthMethod, c.ThingID, c.Disabled,
		f.timeArg(c.Created), f.timeArg(c.Modified), c.Revision, string(doc), jwks}, nil
}

// CreateClient stores c, setting its Meta as for identities; the ID may be
// chosen by the caller (a client_id registered by hand).
func (t *txn) CreateClient(ctx context.Context, c *store.Client) error {
	x := *c
	x.Meta = store.Meta{ID: c.ID, Revision: 1, Created: now()}
	if x.ID == "" {
		x.ID = newID()
	}
	x.Modified = x.Created
	args, err := t.clientArgs(&x)
	if err != nil {
		return err
	}
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_clients ("+clientColumns+") VALUES "+
		t.placeholders(1, clientCols, 1)+" ON CONFLICT DO NOTHING", args...))
	if err != nil {
		return fmt.Errorf("create client %q: %w", x.Name, err)
	}
	if n == 0 {
		return fmt.Errorf("client id %q: %w", x.ID, store.ErrConflict)
	}
	c.Meta = x.Meta
	return nil
}

func (t *txn) getClient(ctx context.Context, id string, lock bool) (*store.Client, error) {
	q := "SELECT " + clientColumns + " FROM oauth_clients WHERE id = " + t.ph(1)
	if lock {
		q += t.flavor().forUpdate()
	}
	c, err := scanClient(t.q.QueryRowContext(ctx, q, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("client %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get client %s: %w", id, err)
	}
	return c, nil
}

func (t *txn) GetClient(ctx context.Context, id string) (*store.Client, error) {
	return t.getClient(ctx, id, false)
}

func (t *txn) UpdateClient(ctx context.Context, id string, ifRevision int64, fn func(*store.Client) error) (*store.Client, error) {
	return update("client", id, ifRevision,
		func() (*store.Client, *store.Meta, error) {
			c, err := t.getClient(ctx, id, true)
			if err != nil {
				return nil, nil, err
			}
			return c, &c.Meta, nil
		}, fn,
		func(c *store.Client, prev int64) (bool, error) {
			args, err := t.clientArgs(c)
			if err != nil {
				return false, err
			}
			// args are in clientColumns order; id and created (args[7]) do not change.
			args = append(append(args[:7:7], args[8:]...), prev)
			n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE oauth_clients SET name = "+t.ph(2)+", client_type = "+t.ph(3)+
				", secret_hash = "+t.ph(4)+", auth_method = "+t.ph(5)+", thing_id = "+t.ph(6)+", disabled = "+t.ph(7)+
				", modified = "+t.ph(8)+", revision = "+t.ph(9)+", doc = "+t.ph(10)+", jwks = "+t.ph(11)+
				" WHERE id = "+t.ph(1)+" AND revision = "+t.ph(12), args...))
			if err != nil {
				return false, fmt.Errorf("update client %s: %w", id, err)
			}
			return n == 1, nil
		})
}

// DeleteClient deletes the client only: see store.Clients.
func (t *txn) DeleteClient(ctx context.Context, id string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM oauth_clients WHERE id = "+t.ph(1), id))
	if err != nil {
		return fmt.Errorf("delete client %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("client %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// ListClients pages clients in creation order; limit as in store.Query.
func (t *txn) ListClients(ctx context.Context, offset, limit int) ([]*store.Client, int, error) {
	var total int
	if err := t.q.QueryRowContext(ctx, "SELECT COUNT(*) FROM oauth_clients").Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count clients: %w", err)
	}
	if limit == 0 {
		return nil, total, nil
	}
	lim := int64(limit)
	if lim < 0 {
		lim = 1<<63 - 1
	}
	rows, err := t.q.QueryContext(ctx, "SELECT "+clientColumns+" FROM oauth_clients ORDER BY created, id LIMIT "+t.ph(1)+
		" OFFSET "+t.ph(2), lim, int64(max(offset, 0)))
	if err != nil {
		return nil, 0, fmt.Errorf("list clients: %w", err)
	}
	defer rows.Close()
	var out []*store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list clients: %w", err)
		}
		out = append(out, c)
	}
	return out, total, rows.Err()
}
