package identity

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"

	"github.com/thingid/thingid/internal/store"
)

// CreateThing validates t and stores it.
func (s *Service) CreateThing(ctx context.Context, actor string, t *store.Thing) (*store.Thing, error) {
	if err := normalizeThing(t); err != nil {
		return nil, err
	}
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		if err := tx.CreateThing(ctx, t); err != nil {
			return nil, err
		}
		return []change{{action: "thing.create", target: store.Ref{Kind: store.KindThing, ID: t.ID}}}, nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// CreateThings is the bulk path (import, SCIM Bulk): it validates every
// thing and stores the valid ones in one transaction. errs[i] is nil when
// things[i] was stored, a *ValidationError or an error wrapping
// store.ErrConflict otherwise; err reports a failure of the whole batch
// (nothing stored).
func (s *Service) CreateThings(ctx context.Context, actor string, things []*store.Thing) (errs []error, err error) {
	return s.createThings(ctx, actor, nil, things)
}

// CreateBatchThings is CreateThings for the factory: the things stored
// join batch b in the same transaction, which records b first when it is
// not stored yet (audited as factory.batch; b's ID must be set, so that a
// resumed run names the same batch).
func (s *Service) CreateBatchThings(ctx context.Context, actor string, b *store.FactoryBatch, things []*store.Thing) (errs []error, err error) {
	if b == nil || b.ID == "" {
		return nil, errors.New("identity: a factory batch needs its ID")
	}
	return s.createThings(ctx, actor, b, things)
}

// GetFactoryBatch reads one factory batch.
func (s *Service) GetFactoryBatch(ctx context.Context, id string) (*store.FactoryBatch, error) {
	return s.store.GetFactoryBatch(ctx, id)
}

func (s *Service) createThings(ctx context.Context, actor string, batch *store.FactoryBatch, things []*store.Thing) (errs []error, err error) {
	errs = make([]error, len(things))
	valid := make([]*store.Thing, 0, len(things))
	index := make([]int, 0, len(things))
	for i, t := range things {
		if errs[i] = normalizeThing(t); errs[i] == nil {
			valid = append(valid, t)
			index = append(index, i)
		}
	}
	if len(valid) == 0 {
		return errs, nil
	}
	err = s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		var changes []change
		var detail map[string]string
		if batch != nil {
			detail = map[string]string{"batch": batch.ID}
			c, err := recordBatch(ctx, tx, batch)
			if err != nil {
				return nil, err
			}
			changes = append(changes, c...)
		}
		rowErrs, err := tx.CreateThings(ctx, valid)
		if err != nil {
			return nil, err
		}
		stored := make([]string, 0, len(valid))
		for j, e := range rowErrs {
			errs[index[j]] = e
			if e == nil {
				stored = append(stored, valid[j].ID)
				changes = append(changes, change{action: "thing.create", target: store.Ref{Kind: store.KindThing, ID: valid[j].ID}, detail: detail})
			}
		}
		if batch != nil {
			if err := tx.AddFactoryBatchThings(ctx, batch.ID, stored); err != nil {
				return nil, err
			}
		}
		return changes, nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// KindBatch names factory batches in the audit log and events.
const KindBatch store.Kind = "batch"

// recordBatch stores b, or its new plan when a resumed run makes more
// devices than it was started with.
func recordBatch(ctx context.Context, tx store.Tx, b *store.FactoryBatch) ([]change, error) {
	stored, err := tx.GetFactoryBatch(ctx, b.ID)
	switch {
	case err == nil && stored.Count == b.Count && stored.FirstSerial == b.FirstSerial && stored.LastSerial == b.LastSerial:
		return nil, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	action := "factory.batch"
	if err == nil {
		action = "factory.batch.extend"
	}
	if err := tx.PutFactoryBatch(ctx, b); err != nil {
		return nil, err
	}
	return []change{{action: action, target: store.Ref{Kind: KindBatch, ID: b.ID},
		detail: map[string]string{"model": b.Model, "manufacturer": b.Manufacturer, "count": strconv.Itoa(b.Count),
			"firstSerial": b.FirstSerial, "lastSerial": b.LastSerial}}}, nil
}

// UpdateThing applies fn to the stored thing and validates the result.
func (s *Service) UpdateThing(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Thing) error) (*store.Thing, error) {
	var out *store.Thing
	err := s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		var changes []change
		var err error
		out, changes, err = updateThing(ctx, tx, id, ifRevision, fn)
		return changes, err
	})
	return out, err
}

// UpdateThing is Service.UpdateThing inside the transaction: the thing
// changes with whatever else the transaction changes, or not at all.
func (t *Tx) UpdateThing(ctx context.Context, id string, ifRevision int64, fn func(*store.Thing) error) (*store.Thing, error) {
	out, changes, err := updateThing(ctx, t.Store, id, ifRevision, fn)
	if err != nil {
		return nil, err
	}
	t.changes = append(t.changes, changes...)
	return out, nil
}

// updateThing applies fn to the thing in tx, validates the result and
// returns the changes to audit and publish.
func updateThing(ctx context.Context, tx store.Tx, id string, ifRevision int64, fn func(*store.Thing) error) (*store.Thing, []change, error) {
	var before store.Status
	t, err := tx.UpdateThing(ctx, id, ifRevision, func(t *store.Thing) error {
		before = t.Status
		if err := fn(t); err != nil {
			return err
		}
		return normalizeThing(t)
	})
	if err != nil {
		return nil, nil, err
	}
	ref := store.Ref{Kind: store.KindThing, ID: id}
	changes := []change{{action: "thing.update", target: ref}}
	if ev := statusChange(store.KindThing, before, t.Status); ev != "" {
		changes = append(changes, change{action: ev, target: ref})
	}
	return t, changes, nil
}

// DeleteThing removes a thing and its relationships.
func (s *Service) DeleteThing(ctx context.Context, actor, id string, ifRevision int64) error {
	return s.write(ctx, actor, func(tx store.Tx) ([]change, error) {
		if err := tx.DeleteThing(ctx, id, ifRevision); err != nil {
			return nil, err
		}
		return []change{{action: "thing.delete", target: store.Ref{Kind: store.KindThing, ID: id}}}, nil
	})
}

// GetThing reads one thing.
func (s *Service) GetThing(ctx context.Context, id string) (*store.Thing, error) {
	return s.store.GetThing(ctx, id)
}

// ListThings reads a page of things.
func (s *Service) ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error) {
	return s.store.ListThings(ctx, q)
}

var (
	serialRE    = regexp.MustCompile(`^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$`)
	attrNameRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
	maxAttrJSON = 16 << 10
)

func normalizeThing(t *store.Thing) error {
	switch t.Type {
	case "":
		t.Type = store.ThingDevice
	case store.ThingDevice, store.ThingService, store.ThingGateway:
	default:
		return invalid("thingType", "%q is not one of device, service, gateway", t.Type)
	}
	if t.SerialNumber != "" && !serialRE.MatchString(t.SerialNumber) {
		return invalid("serialNumber", "must be 1 to 128 printable ASCII characters without leading or trailing space")
	}
	for _, f := range []struct{ name, value string }{
		{"displayName", t.DisplayName}, {"externalId", t.ExternalID}, {"manufacturer", t.Manufacturer},
		{"model", t.Model}, {"firmwareVersion", t.FirmwareVersion}, {"location", t.Location},
	} {
		if err := checkText(f.name, f.value, 0, 256); err != nil {
			return err
		}
	}
	if err := checkStatus(&t.Status); err != nil {
		return err
	}
	if len(t.MACAddresses) > 16 {
		return invalid("macAddresses", "at most 16 addresses")
	}
	seen := make(map[string]bool, len(t.MACAddresses))
	macs := t.MACAddresses[:0]
	for _, m := range t.MACAddresses {
		n, err := NormalizeMAC(m)
		if err != nil {
			return invalid("macAddresses", "%v", err)
		}
		if !seen[n] {
			seen[n] = true
			macs = append(macs, n)
		}
	}
	t.MACAddresses = macs
	if err := checkJWKS(t.JWKS); err != nil {
		return err
	}
	for _, c := range t.Certificates {
		if b, err := hex.DecodeString(c.FingerprintSHA256); err != nil || len(b) != 32 || hex.EncodeToString(b) != c.FingerprintSHA256 {
			return invalid("certificates.fingerprintSha256", "must be 64 lower-case hex digits")
		}
	}
	for k, v := range t.Attributes {
		if !attrNameRE.MatchString(k) {
			return invalid("attributes", "name %q must start with a letter and hold at most 64 letters, digits, '_' or '-'", k)
		}
		if tooDeep(v, maxAttrDepth) {
			return invalid("attributes", "value of %q nests arrays and objects deeper than %d levels", k, maxAttrDepth)
		}
	}
	if len(t.Attributes) > 0 {
		b, err := json.Marshal(t.Attributes)
		if err != nil {
			return invalid("attributes", "values must be JSON values")
		}
		if len(b) > maxAttrJSON {
			return invalid("attributes", "must be at most %d bytes as JSON", maxAttrJSON)
		}
	}
	return nil
}

// maxAttrDepth bounds the nesting of attribute values: the databases parse the
// whole attributes document to filter or sort by any one of them, and SQLite
// refuses JSON nested deeper than 1000 levels, so one deep value would make
// every attributes filter over its thing fail.
const maxAttrDepth = 32

// tooDeep reports whether v nests arrays and objects more than limit levels.
func tooDeep(v any, limit int) bool {
	switch v := v.(type) {
	case map[string]any:
		if limit == 0 {
			return true
		}
		for _, e := range v {
			if tooDeep(e, limit-1) {
				return true
			}
		}
	case []any:
		if limit == 0 {
			return true
		}
		for _, e := range v {
			if tooDeep(e, limit-1) {
				return true
			}
		}
	}
	return false
}

// checkJWKS accepts an RFC 7517 key set holding public keys only.
func checkJWKS(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil || set.Keys == nil {
		return invalid("jwks", "must be a JSON Web Key Set: an object with a \"keys\" array (RFC 7517 §5)")
	}
	for i, k := range set.Keys {
		if _, ok := k["kty"].(string); !ok {
			return invalid("jwks", "key %d has no \"kty\"", i)
		}
		// A private or symmetric key in a thing's public key set is a leak, never intended.
		for _, p := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[p]; ok {
				return invalid("jwks", "key %d holds private or symmetric key material (%q); register public keys only", i, p)
			}
		}
	}
	return nil
}
