// Package devimport creates devices in bulk from a CSV or JSON lines file, the
// factory path behind `thingid devices import`. It streams the file, writes only
// through the identity service, can be re-run to resume, and never prints.
package devimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// Things is what Import needs of the identity service (*identity.Service).
type Things interface {
	CreateThings(ctx context.Context, actor string, things []*store.Thing) (errs []error, err error)
	ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error)
}

// Options control an import. The zero value of every field but Format has a default.
type Options struct {
	// Format of the file; FormatOf picks it from the file name.
	Format Format
	// Manufacturer and Model fill rows that leave them empty.
	Manufacturer string
	Model        string
	// Actor is recorded in the audit log; default "cli".
	Actor string
	// BatchSize is the number of rows per CreateThings call (one transaction);
	// default 2000.
	BatchSize int
	// MaxRejects is how many rejected rows Summary.Rejects keeps; default 100.
	MaxRejects int
	// KeepRejects spools every rejected row to a temporary file so that
	// Summary.WriteRejects can write them all; call Summary.Close afterwards.
	KeepRejects bool
	// Progress, when set, is called after every batch with the rows and bytes of
	// the file read so far.
	Progress func(rowsRead, bytesRead int64)
}

// Summary says what an import did. After an error or a cancellation it says how
// far the import got: everything up to LastLine is accounted for and committed.
type Summary struct {
	Rows     int64 // rows read (blank lines and the header are not rows)
	Created  int64
	Skipped  int64 // already imported by an earlier run
	Rejected int64
	LastLine int64 // the last line accounted for
	Bytes    int64 // bytes of the file up to LastLine
	Elapsed  time.Duration
	// Rejects are the first Options.MaxRejects rejected rows.
	Rejects []*RowError

	spool *spool // every rejected row, with Options.KeepRejects
}

// RowsPerSecond is the import rate.
func (s Summary) RowsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Rows) / s.Elapsed.Seconds()
}

// HeaderError is an import that stopped before its first row: the file's
// format, or its CSV header row, is wrong. Nothing was imported.
type HeaderError struct{ Err error }

func (e *HeaderError) Error() string { return e.Err.Error() }
func (e *HeaderError) Unwrap() error { return e.Err }

// Import reads devices from src and creates them through svc in batches, one
// transaction each. Rows already imported (same manufacturer, model, serial number
// and MAC addresses) are skipped, so re-running a file resumes it. A bad row is
// rejected and the import goes on; a failure of a whole batch (the database is
// gone) stops it. When ctx is cancelled the batch being written still completes,
// then Import returns the summary so far and ctx's error.
func Import(ctx context.Context, svc Things, src io.Reader, opts Options) (sum Summary, err error) {
	start := time.Now()
	defer func() { sum.Elapsed = time.Since(start) }()
	if opts.Actor == "" {
		opts.Actor = "cli"
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 2000
	}
	if opts.MaxRejects <= 0 {
		opts.MaxRejects = 100
	}
	rd, err := NewReader(src, opts)
	if err != nil {
		return sum, &HeaderError{Err: err}
	}
	im := &importer{svc: svc, opts: opts, sum: &sum}
	if opts.KeepRejects {
		if sum.spool, err = newSpool(); err != nil {
			return sum, err
		}
	}
	batch := make([]Row, 0, opts.BatchSize)
	var lastRead int64
	for {
		if err := ctx.Err(); err != nil {
			return sum, fmt.Errorf("import stopped after line %d: %w", sum.LastLine, err)
		}
		batch = batch[:0]
		eof := false
		for range opts.BatchSize {
			row, err := rd.Read()
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return sum, fmt.Errorf("reading after line %d: %w", lastRead, err)
			}
			sum.Rows++
			lastRead = row.Line
			if row.Err != nil {
				if err := im.reject(row.Err); err != nil {
					return sum, err
				}
				continue
			}
			batch = append(batch, row)
		}
		// The batch is written even if ctx is cancelled meanwhile, so that an
		// interrupted import ends on a batch boundary the summary can name.
		if err := im.write(context.WithoutCancel(ctx), batch); err != nil {
			return sum, err
		}
		sum.LastLine = lastRead
		sum.Bytes = rd.Offset()
		if opts.Progress != nil {
			opts.Progress(sum.Rows, sum.Bytes)
		}
		if eof {
			return sum, nil
		}
	}
}

type importer struct {
	svc  Things
	opts Options
	sum  *Summary
}

func (im *importer) reject(e *RowError) error {
	im.sum.Rejected++
	if len(im.sum.Rejects) < im.opts.MaxRejects {
		im.sum.Rejects = append(im.sum.Rejects, e)
	}
	if im.sum.spool != nil {
		return im.sum.spool.add(e)
	}
	return nil
}

func (im *importer) write(ctx context.Context, batch []Row) error {
	if len(batch) == 0 {
		return nil
	}
	things := make([]*store.Thing, len(batch))
	for i, r := range batch {
		things[i] = r.Thing
	}
	errs, err := im.svc.CreateThings(ctx, im.opts.Actor, things)
	if err == nil && len(errs) != len(things) {
		err = fmt.Errorf("the service answered %d results for %d things", len(errs), len(things))
	}
	if err != nil {
		return fmt.Errorf("lines %d to %d, nothing of them stored: %w", batch[0].Line, batch[len(batch)-1].Line, err)
	}
	var conflicts []conflict
	for i, e := range errs {
		switch {
		case e == nil:
			im.sum.Created++
		case errors.Is(e, store.ErrConflict):
			conflicts = append(conflicts, conflict{batch[i], e})
		default:
			if err := im.reject(serviceError(batch[i].Line, e)); err != nil {
				return err
			}
		}
	}
	return im.resolve(ctx, conflicts)
}

// conflict is a row the store refused with ErrConflict.
type conflict struct {
	Row
	err error
}

func serviceError(line int64, err error) *RowError {
	if ve, ok := errors.AsType[*identity.ValidationError](err); ok {
		return &RowError{Line: line, Field: ve.Field, Reason: ve.Reason()}
	}
	return &RowError{Line: line, Reason: err.Error()}
}

// lookupChunk is how many serial numbers one ListThings call asks for.
const lookupChunk = 200

// identityKey is what makes a serial number unique.
type identityKey struct{ manufacturer, model, serial string }

func keyOf(t *store.Thing) identityKey {
	return identityKey{t.Manufacturer, t.Model, t.SerialNumber}
}

// resolve tells re-imported rows from true conflicts. The store's conflict error
// does not say (portably) which constraint failed, so we look at what is stored:
// a thing with the row's manufacturer, model and serial number and the same MAC
// addresses is the row itself, imported by an earlier run (or an identical
// duplicate row earlier in the file); anything else is a conflict with another
// device, reported with that device named.
func (im *importer) resolve(ctx context.Context, rows []conflict) error {
	if len(rows) == 0 {
		return nil
	}
	// One query per chunk of serial numbers of one manufacturer and model: the
	// shape of the unique index (manufacturer, model, serial number).
	groups := map[[2]string][]string{}
	var order [][2]string
	for _, r := range rows {
		mm := [2]string{r.Thing.Manufacturer, r.Thing.Model}
		if _, ok := groups[mm]; !ok {
			order = append(order, mm)
		}
		groups[mm] = append(groups[mm], r.Thing.SerialNumber)
	}
	stored := map[identityKey]*store.Thing{}
	for _, mm := range order {
		for serials := range slices.Chunk(groups[mm], lookupChunk) {
			filter := store.And{
				Left:  store.And{Left: eq("manufacturer", mm[0]), Right: eq("model", mm[1])},
				Right: anyOf("serialNumber", serials),
			}
			found, _, err := im.svc.ListThings(ctx, store.Query{Filter: filter, Limit: -1})
			if err != nil {
				return fmt.Errorf("lines %d to %d: looking up conflicting serial numbers: %w", rows[0].Line, rows[len(rows)-1].Line, err)
			}
			for _, t := range found {
				stored[keyOf(t)] = t
			}
		}
	}
	for _, r := range rows {
		var rej *RowError
		switch t := stored[keyOf(r.Thing)]; {
		case t != nil && sameSet(t.MACAddresses, r.Thing.MACAddresses):
			im.sum.Skipped++
			continue
		case t != nil:
			rej = &RowError{Line: r.Line, Field: "serialNumber", Reason: fmt.Sprintf(
				"%q is already registered for manufacturer %q model %q as thing %s with MAC addresses [%s]; this row has [%s]",
				t.SerialNumber, t.Manufacturer, t.Model, t.ID, strings.Join(t.MACAddresses, " "), strings.Join(r.Thing.MACAddresses, " "))}
		default:
			var err error
			if rej, err = im.macConflict(ctx, r.Row, r.err); err != nil {
				return err
			}
		}
		if err := im.reject(rej); err != nil {
			return err
		}
	}
	return nil
}

// macConflict names the device that already holds one of r's MAC addresses.
func (im *importer) macConflict(ctx context.Context, r Row, storeErr error) (*RowError, error) {
	for _, m := range r.Thing.MACAddresses {
		q := store.Query{Filter: eq("macAddresses", m), Limit: 1}
		found, _, err := im.svc.ListThings(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("line %d: looking up MAC address %s: %w", r.Line, m, err)
		}
		if len(found) > 0 {
			t := found[0]
			return &RowError{Line: r.Line, Field: "macAddresses", Reason: fmt.Sprintf(
				"%s is already used by thing %s (manufacturer %q model %q serial number %q)", m, t.ID, t.Manufacturer, t.Model, t.SerialNumber)}, nil
		}
	}
	// The conflicting device changed since; say what the store said.
	return &RowError{Line: r.Line, Reason: storeErr.Error()}, nil
}

// anyOf is field eq values[0] or field eq values[1] ..., as a balanced tree so the
// SQL nesting stays shallow (SQLite allows expressions 1000 deep).
func anyOf(field string, values []string) store.Expr {
	if len(values) == 1 {
		return eq(field, values[0])
	}
	mid := len(values) / 2
	return store.Or{Left: anyOf(field, values[:mid]), Right: anyOf(field, values[mid:])}
}

func eq(field, value string) store.Expr {
	return store.Compare{Field: field, Op: store.OpEq, Value: value}
}

// sameSet compares two lists of normalized MAC addresses regardless of order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
