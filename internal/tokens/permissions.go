package tokens

import (
	"encoding/json"
	"errors"
)

// Permission is one entry of a UMA RPT's "permissions" claim (UMA 2.0
// Federated Authorization §5.1.1): what internal/uma signs into the RPT and
// answers at introspection, and what a resource server (the gateway's uma
// filter) checks.
type Permission struct {
	ResourceID string   `json:"resource_id"`
	Scopes     []string `json:"resource_scopes"`
	// ExpiresAt is the permission's own end (unix seconds); 0 for none.
	ExpiresAt int64 `json:"exp,omitempty"`
}

// ErrNotRPT is the refusal of a permissions claim that is absent or not
// one: the token is no RPT.
var ErrNotRPT = errors.New("tokens: no valid permissions claim: not an RPT")

// ParsePermissions reads Claims.Permissions of a verified token: an array of
// permissions, each naming its resource.
func ParsePermissions(raw json.RawMessage) ([]Permission, error) {
	if len(raw) == 0 {
		return nil, ErrNotRPT
	}
	var ps []Permission
	if err := json.Unmarshal(raw, &ps); err != nil {
		return nil, ErrNotRPT
	}
	for _, p := range ps {
		if p.ResourceID == "" {
			return nil, ErrNotRPT
		}
	}
	return ps, nil
}
