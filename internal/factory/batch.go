package factory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/uuid"

	"github.com/thingid/thingid/internal/atomicfile"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
)

// BatchesFile in Options.Out names the factory batches made there, one per
// manufacturer and model: runs of one model into one directory (resumed, or
// with a bigger count) are one batch; another model there is another.
const BatchesFile = "batches.csv"

var batchesHeader = []string{"batch_id", "manufacturer", "model"}

// openBatch returns the factory batch of opt's manufacturer and model in
// opt.Out: the one BatchesFile names, or a new one whose ID the file keeps
// from now on. The batch is stored with its first things
// (Things.CreateBatchThings), so a run that stores nothing leaves none.
func openBatch(ctx context.Context, things Things, ca *pki.DeviceCA, opt Options, devs []*device) (*store.FactoryBatch, error) {
	path := filepath.Join(opt.Out, BatchesFile)
	sum := sha256.Sum256(ca.Cert.Raw)
	b := &store.FactoryBatch{Actor: opt.Actor, Model: opt.Model, Manufacturer: opt.Manufacturer, Count: len(devs),
		FirstSerial: devs[0].serial, LastSerial: devs[len(devs)-1].serial,
		CASubject: ca.Cert.Subject.String(), CAFingerprint: hex.EncodeToString(sum[:]), Validity: ca.Validity(opt.Lifetime)}
	rows := [][]string{batchesHeader}
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("output directory: %w", err)
	default:
		r := csv.NewReader(bytes.NewReader(raw))
		r.FieldsPerRecord = len(batchesHeader)
		if rows, err = r.ReadAll(); err != nil || len(rows) == 0 || !slices.Equal(rows[0], batchesHeader) {
			return nil, fmt.Errorf("%s is not a list of factory batches (%v); use another output directory", path, err)
		}
	}
	for _, row := range rows[1:] {
		if row[1] != opt.Manufacturer || row[2] != opt.Model {
			continue
		}
		id, err := uuid.Parse(row[0])
		if err != nil {
			return nil, fmt.Errorf("%s: batch ID %q of model %q: %w", path, row[0], row[2], err)
		}
		b.ID = id.String()
		stored, err := things.GetFactoryBatch(ctx, b.ID)
		if errors.Is(err, store.ErrNotFound) {
			return b, nil // the first run stored nothing
		}
		if err != nil {
			return nil, err
		}
		// The plan may change (a bigger count makes more devices); what was
		// recorded at the start stays.
		stored.Count, stored.FirstSerial, stored.LastSerial = b.Count, b.FirstSerial, b.LastSerial
		return stored, nil
	}
	b.ID = uuid.Must(uuid.NewV7()).String()
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	w.WriteAll(append(rows, []string{b.ID, opt.Manufacturer, opt.Model}))
	if err := atomicfile.Write(path, out.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	return b, nil
}
