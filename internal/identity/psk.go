package identity

import (
	"context"

	"github.com/thingid/thingid/internal/store"
)

// Event types of things' pre-shared keys. A first key concerns no other
// process (nothing can hold a session on a key that did not exist); a
// re-issue ends the sessions of the key it replaced, on every node.
const (
	EventPSKIssue   = "thing.psk-issue"
	EventPSKReissue = "thing.psk-reissue"
)

// SetThingPSKs stores sealed pre-shared keys (internal/psk makes them), each
// replacing its thing's key, in one transaction, audited with the key id
// (never the key).
func (s *Service) SetThingPSKs(ctx context.Context, actor string, keys []*store.ThingPSK) error {
	return s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		changes := make([]change, 0, len(keys))
		for _, k := range keys {
			replaced, err := tx.PutThingPSK(ctx, k)
			if err != nil {
				return nil, err
			}
			action := EventPSKIssue
			if replaced {
				action = EventPSKReissue
			}
			changes = append(changes, change{action: action, target: store.Ref{Kind: store.KindThing, ID: k.ThingID},
				detail: map[string]string{"keyId": k.KeyID}})
		}
		return changes, nil
	})
}
