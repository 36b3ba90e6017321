package factory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/thingid/thingid/internal/atomicfile"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
)

// BatchFile in Options.Out names the factory batch the directory belongs to.
const BatchFile = "batch.id"

// openBatch returns the factory batch of opt.Out: the one its BatchFile
// names, or a new one whose ID the file keeps from now on. The batch is
// stored with its first things (Things.CreateBatchThings), so a run that
// stores nothing leaves none. A resumed run must make the same model of the
// same manufacturer.
func openBatch(ctx context.Context, things Things, ca *pki.DeviceCA, opt Options, devs []*device) (*store.FactoryBatch, error) {
	path := filepath.Join(opt.Out, BatchFile)
	sum := sha256.Sum256(ca.Cert.Raw)
	b := &store.FactoryBatch{Actor: opt.Actor, Model: opt.Model, Manufacturer: opt.Manufacturer, Count: len(devs),
		FirstSerial: devs[0].serial, LastSerial: devs[len(devs)-1].serial,
		CASubject: ca.Cert.Subject.String(), CAFingerprint: hex.EncodeToString(sum[:]), Validity: ca.Validity(opt.Lifetime)}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b.ID = uuid.Must(uuid.NewV7()).String()
		if err := atomicfile.Write(path, []byte(b.ID+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("output directory: %w", err)
		}
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	id, err := uuid.ParseBytes(bytes.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%s does not hold a factory batch ID; use another output directory", path)
	}
	b.ID = id.String()
	stored, err := things.GetFactoryBatch(ctx, b.ID)
	if errors.Is(err, store.ErrNotFound) {
		return b, nil // the first run stored nothing
	}
	if err != nil {
		return nil, err
	}
	if stored.Model != b.Model || stored.Manufacturer != b.Manufacturer {
		return nil, fmt.Errorf("%s holds factory batch %s of model %q by %q: run again with the same model and manufacturer, or use another output directory",
			opt.Out, stored.ID, stored.Model, stored.Manufacturer)
	}
	// The plan may change (a bigger count makes more devices); what was
	// recorded at the start stays.
	stored.Count, stored.FirstSerial, stored.LastSerial = b.Count, b.FirstSerial, b.LastSerial
	return stored, nil
}
