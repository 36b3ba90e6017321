package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/thingid/thingid/internal/store"
)

// PutConsent replaces the user's consent for the client; Created defaults to now.
func (t *txn) PutConsent(ctx context.Context, c *store.Consent) error {
	if c.UserID == "" || c.ClientID == "" {
		return errors.New("consent: UserID and ClientID are required")
	}
	created := orNow(c.Created)
	if _, err := t.q.ExecContext(ctx, "INSERT INTO oauth_consents (user_id, client_id, scopes, created) VALUES "+
		t.placeholders(1, 4, 1)+" ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, created = excluded.created",
		c.UserID, c.ClientID, listArg(c.Scopes), t.flavor().timeArg(created)); err != nil {
		return fmt.Errorf("put consent of user %s for client %s: %w", c.UserID, c.ClientID, err)
	}
	c.Created = created
	return nil
}

func (t *txn) GetConsent(ctx context.Context, userID, clientID string) (*store.Consent, error) {
	c := store.Consent{UserID: userID, ClientID: clientID}
	err := t.q.QueryRowContext(ctx, "SELECT scopes, created FROM oauth_consents WHERE user_id = "+t.ph(1)+" AND client_id = "+t.ph(2),
		userID, clientID).Scan(listCol{&c.Scopes}, timeCol{&c.Created})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("consent of user %s for client %s: %w", userID, clientID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get consent: %w", err)
	}
	return &c, nil
}

func (t *txn) DeleteConsent(ctx context.Context, userID, clientID string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM oauth_consents WHERE user_id = "+t.ph(1)+" AND client_id = "+t.ph(2), userID, clientID))
	if err != nil {
		return fmt.Errorf("delete consent: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("consent of user %s for client %s: %w", userID, clientID, store.ErrNotFound)
	}
	return nil
}
