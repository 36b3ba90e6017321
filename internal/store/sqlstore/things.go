package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// thingDoc is the JSON document of a thing: everything not in a typed column.
type thingDoc struct {
	// MACAddresses copies the thing_macs rows (written in the same
	// transaction) so that reading things needs no join; thing_macs stays
	// the source of uniqueness and of MAC filters.
	MACAddresses []string        `json:"macAddresses,omitempty"`
	JWKS         json.RawMessage `json:"jwks,omitempty"`
	Certificates []store.CertRef `json:"certificates,omitempty"`
}

const (
	thingColumns = "x.id, x.external_id, x.display_name, x.thing_type, x.manufacturer, x.model, x.serial_number, " +
		"x.firmware_version, x.location, x.status, x.created, x.modified, x.revision, x.attributes, x.doc"
	thingInsert = "INSERT INTO things (id, external_id, display_name, thing_type, manufacturer, model, serial_number, " +
		"firmware_version, location, status, created, modified, revision, attributes, doc) VALUES "
	thingCols = 15
)

// scanThing reads thingColumns, and into more the columns after them.
func scanThing(s scanner, more ...any) (*store.Thing, error) {
	var (
		th         store.Thing
		attrs, doc []byte
	)
	if err := s.Scan(append([]any{&th.ID, &th.ExternalID, &th.DisplayName, &th.Type, &th.Manufacturer, &th.Model, &th.SerialNumber,
		&th.FirmwareVersion, &th.Location, &th.Status, timeCol{&th.Created}, timeCol{&th.Modified}, &th.Revision,
		&attrs, &doc}, more...)...); err != nil {
		return nil, err
	}
	var d thingDoc
	if err := unmarshalObject(doc, &d); err != nil {
		return nil, fmt.Errorf("thing %s: document: %w", th.ID, err)
	}
	if err := unmarshalObject(attrs, &th.Attributes); err != nil {
		return nil, fmt.Errorf("thing %s: attributes: %w", th.ID, err)
	}
	if len(th.Attributes) == 0 {
		th.Attributes = nil
	}
	th.MACAddresses, th.JWKS, th.Certificates = d.MACAddresses, d.JWKS, d.Certificates
	return &th, nil
}

// unmarshalObject decodes the JSON object b into v, which it leaves as it
// is when b is the empty object most things' documents and attributes are
// (a decoder costs about a microsecond even then).
func unmarshalObject(b []byte, v any) error {
	if string(b) == "{}" {
		return nil
	}
	return json.Unmarshal(b, v)
}

// thingRow is a thing ready to be written.
type thingRow struct {
	th          *store.Thing
	meta        store.Meta
	macs        []string
	attrs, doc  string
	inserted    bool
	conflictErr error
}

// normMACs lower-cases and de-duplicates MACs: the column is compared with
// lower-cased filter values and a thing listing a MAC twice must not conflict
// with itself.
func normMACs(macs []string) []string {
	var out []string
	for _, m := range macs {
		m = strings.ToLower(m)
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func newThingRow(th *store.Thing, m store.Meta) (*thingRow, error) {
	r := &thingRow{th: th, meta: m, macs: normMACs(th.MACAddresses)}
	attrs := th.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	a, err := json.Marshal(attrs)
	if err != nil {
		return nil, fmt.Errorf("thing %s: attributes: %w", m.ID, err)
	}
	d, err := json.Marshal(thingDoc{MACAddresses: r.macs, JWKS: th.JWKS, Certificates: th.Certificates})
	if err != nil {
		return nil, fmt.Errorf("thing %s: %w", m.ID, err)
	}
	r.attrs, r.doc = string(a), string(d)
	return r, nil
}

func (t *txn) CreateThing(ctx context.Context, th *store.Thing) error {
	errs, err := t.CreateThings(ctx, []*store.Thing{th})
	if err != nil {
		return err
	}
	return errs[0]
}

// CreateThings is the factory path: multi-row INSERT ... ON CONFLICT DO
// NOTHING RETURNING, a few hundred rows per prepared statement, so that a
// conflicting row (id, serial, MAC) is reported in errs without aborting the
// transaction or costing a round trip per row.
func (t *txn) CreateThings(ctx context.Context, things []*store.Thing) ([]error, error) {
	errs := make([]error, len(things))
	created := now()
	rows := make([]*thingRow, len(things))
	for i, th := range things {
		m := store.Meta{ID: th.ID, Revision: 1, Created: created, Modified: created}
		if m.ID == "" {
			m.ID = newID()
		}
		r, err := newThingRow(th, m)
		if err != nil {
			return nil, fmt.Errorf("things[%d]: %w", i, err)
		}
		rows[i] = r
	}
	stmts := map[string]*sql.Stmt{} // by SQL text, for the life of this call
	defer func() {
		for _, s := range stmts {
			s.Close()
		}
	}()
	prepare := func(q string) (*sql.Stmt, error) {
		if s, ok := stmts[q]; ok {
			return s, nil
		}
		s, err := t.q.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		stmts[q] = s
		return s, nil
	}
	chunk := t.flavor().maxRowsPerInsert(thingCols)
	for start := 0; start < len(rows); start += chunk {
		if err := t.insertThings(ctx, prepare, rows[start:min(start+chunk, len(rows))]); err != nil {
			return nil, err
		}
	}
	for i, r := range rows {
		if r.inserted {
			things[i].Meta = r.meta
		}
		errs[i] = r.conflictErr
	}
	return errs, nil
}

func (t *txn) insertThings(ctx context.Context, prepare func(string) (*sql.Stmt, error), rows []*thingRow) error {
	f := t.flavor()
	stmt, err := prepare(thingInsert + t.placeholders(len(rows), thingCols, 1) + " ON CONFLICT DO NOTHING RETURNING id")
	if err != nil {
		return fmt.Errorf("create things: %w", err)
	}
	args := make([]any, 0, len(rows)*thingCols)
	for _, r := range rows {
		th := r.th
		args = append(args, r.meta.ID, th.ExternalID, th.DisplayName, string(th.Type), th.Manufacturer, th.Model,
			th.SerialNumber, th.FirmwareVersion, th.Location, string(th.Status), f.timeArg(r.meta.Created),
			f.timeArg(r.meta.Modified), r.meta.Revision, r.attrs, r.doc)
	}
	ids, err := collect(stmt.QueryContext(ctx, args...))
	if err != nil {
		return fmt.Errorf("create things: %w", err)
	}
	inserted := map[string]bool{}
	for _, id := range ids {
		inserted[id[0]] = true
	}
	var withMACs []*thingRow
	for _, r := range rows {
		if inserted[r.meta.ID] {
			delete(inserted, r.meta.ID) // a repeated id in the batch conflicts with its first use
			r.inserted = true
			if len(r.macs) > 0 {
				withMACs = append(withMACs, r)
			}
			continue
		}
		if r.conflictErr, err = t.thingConflict(ctx, r); err != nil {
			return err
		}
	}
	if err := t.insertMACs(ctx, prepare, withMACs); err != nil {
		return err
	}
	for _, r := range rows {
		if r.inserted { // still: a MAC conflict took it back
			if err := t.insertCertificates(ctx, r.meta.ID, r.th.Certificates); err != nil {
				return err
			}
		}
	}
	return nil
}

// replaceCertificates makes thing_certificates hold the certificates of
// thing id that have a NotAfter (a thing has a few: the rows are replaced).
func (t *txn) replaceCertificates(ctx context.Context, id string, certs []store.CertRef) error {
	if _, err := t.q.ExecContext(ctx, "DELETE FROM thing_certificates WHERE thing_id = "+t.ph(1), id); err != nil {
		return fmt.Errorf("thing %s: certificates: %w", id, err)
	}
	return t.insertCertificates(ctx, id, certs)
}

// insertCertificates adds the certificates of thing id that have a NotAfter
// to thing_certificates.
func (t *txn) insertCertificates(ctx context.Context, id string, certs []store.CertRef) error {
	for _, c := range certs {
		if c.NotAfter.IsZero() || c.FingerprintSHA256 == "" {
			continue
		}
		if _, err := t.q.ExecContext(ctx, "INSERT INTO thing_certificates (thing_id, fingerprint, not_after, issuer, ca_id) VALUES "+
			t.placeholders(1, 5, 1)+" ON CONFLICT DO NOTHING", id, c.FingerprintSHA256, t.flavor().timeArg(c.NotAfter), c.Issuer, c.CA); err != nil {
			return fmt.Errorf("thing %s: certificate %s: %w", id, c.FingerprintSHA256, err)
		}
	}
	return nil
}

// thingConflict names the unique constraint a thing that was not inserted hit
// (conflict); err is a failure to find out.
func (t *txn) thingConflict(ctx context.Context, r *thingRow) (conflict, err error) {
	if r.th.ID != "" {
		if ok, err := t.exists(ctx, "things", r.meta.ID); err != nil {
			return nil, err
		} else if ok {
			return fmt.Errorf("thing id %q: %w", r.meta.ID, store.ErrConflict), nil
		}
	}
	return store.Conflict("serialNumber", r.th.SerialNumber, fmt.Errorf("serialNumber %q of manufacturer %q model %q: %w",
		r.th.SerialNumber, r.th.Manufacturer, r.th.Model, store.ErrConflict)), nil
}

// insertMACs stores the MACs of freshly inserted things and takes back every
// thing one of whose MACs is taken.
func (t *txn) insertMACs(ctx context.Context, prepare func(string) (*sql.Stmt, error), rows []*thingRow) error {
	type pair struct{ mac, id string }
	var pairs []pair
	for _, r := range rows {
		for _, m := range r.macs {
			pairs = append(pairs, pair{m, r.meta.ID})
		}
	}
	got := map[pair]bool{}
	chunk := t.flavor().maxRowsPerInsert(2)
	for start := 0; start < len(pairs); start += chunk {
		part := pairs[start:min(start+chunk, len(pairs))]
		stmt, err := prepare("INSERT INTO thing_macs (mac, thing_id) VALUES " + t.placeholders(len(part), 2, 1) +
			" ON CONFLICT DO NOTHING RETURNING mac, thing_id")
		if err != nil {
			return fmt.Errorf("create things: %w", err)
		}
		args := make([]any, 0, 2*len(part))
		for _, p := range part {
			args = append(args, p.mac, p.id)
		}
		res, err := collect(stmt.QueryContext(ctx, args...))
		if err != nil {
			return fmt.Errorf("create things: MACs: %w", err)
		}
		for _, r := range res {
			got[pair{r[0], r[1]}] = true
		}
	}
	for _, r := range rows {
		for _, m := range r.macs {
			if got[pair{m, r.meta.ID}] {
				continue
			}
			// Its other MACs go with it (ON DELETE CASCADE).
			if _, err := t.q.ExecContext(ctx, "DELETE FROM things WHERE id = "+t.ph(1), r.meta.ID); err != nil {
				return fmt.Errorf("create things: undo %s: %w", r.meta.ID, err)
			}
			r.inserted = false
			r.conflictErr = store.Conflict("macAddresses", m, fmt.Errorf("macAddresses %q: %w", m, store.ErrConflict))
			break
		}
	}
	return nil
}

// collect reads all rows of string columns.
func collect(rows *sql.Rows, err error) ([][]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		rec := make([]string, len(cols))
		dest := make([]any, len(cols))
		for i := range rec {
			dest[i] = &rec[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func (t *txn) getThing(ctx context.Context, id string, lock bool) (*store.Thing, error) {
	q := "SELECT " + thingColumns + " FROM things AS x WHERE x.id = " + t.ph(1)
	if lock {
		q += t.flavor().forUpdate()
	}
	th, err := scanThing(t.q.QueryRowContext(ctx, q, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("thing %s: %w", id, store.ErrNotFound)
	}
	return th, err
}

func (t *txn) GetThing(ctx context.Context, id string) (*store.Thing, error) {
	return t.getThing(ctx, id, false)
}

func (t *txn) UpdateThing(ctx context.Context, id string, ifRevision int64, fn func(*store.Thing) error) (*store.Thing, error) {
	f := t.flavor()
	var oldMACs []string
	var oldCerts []store.CertRef
	return update(store.KindThing, id, ifRevision,
		func() (*store.Thing, *store.Meta, error) {
			th, err := t.getThing(ctx, id, true)
			if err != nil {
				return nil, nil, err
			}
			oldMACs, oldCerts = th.MACAddresses, slices.Clone(th.Certificates)
			return th, &th.Meta, nil
		}, fn,
		func(th *store.Thing, prev int64) (bool, error) {
			r, err := newThingRow(th, th.Meta)
			if err != nil {
				return false, err
			}
			res, err := t.q.ExecContext(ctx, "UPDATE things SET external_id = "+t.ph(1)+", display_name = "+t.ph(2)+
				", thing_type = "+t.ph(3)+", manufacturer = "+t.ph(4)+", model = "+t.ph(5)+", serial_number = "+t.ph(6)+
				", firmware_version = "+t.ph(7)+", location = "+t.ph(8)+", status = "+t.ph(9)+", modified = "+t.ph(10)+
				", revision = "+t.ph(11)+", attributes = "+t.ph(12)+", doc = "+t.ph(13)+
				" WHERE id = "+t.ph(14)+" AND revision = "+t.ph(15),
				th.ExternalID, th.DisplayName, string(th.Type), th.Manufacturer, th.Model, th.SerialNumber,
				th.FirmwareVersion, th.Location, string(th.Status), f.timeArg(th.Modified), th.Revision,
				r.attrs, r.doc, id, prev)
			if err != nil {
				if t.s.cfg.IsUniqueViolation(err) {
					return false, store.Conflict("serialNumber", th.SerialNumber, fmt.Errorf("serialNumber %q of manufacturer %q model %q: %w",
						th.SerialNumber, th.Manufacturer, th.Model, store.ErrConflict))
				}
				return false, fmt.Errorf("update thing %s: %w", id, err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return false, err
			}
			th.MACAddresses = r.macs
			if err := t.replaceMACs(ctx, id, oldMACs, r.macs); err != nil {
				return false, err
			}
			if slices.Equal(oldCerts, th.Certificates) {
				return true, nil
			}
			return true, t.replaceCertificates(ctx, id, th.Certificates)
		})
}

// replaceMACs applies the difference between a thing's old and new MACs.
func (t *txn) replaceMACs(ctx context.Context, id string, old, next []string) error {
	for _, m := range old {
		if !slices.Contains(next, m) {
			if _, err := t.q.ExecContext(ctx, "DELETE FROM thing_macs WHERE mac = "+t.ph(1), m); err != nil {
				return fmt.Errorf("thing %s: remove MAC %s: %w", id, m, err)
			}
		}
	}
	for _, m := range next {
		if slices.Contains(old, m) {
			continue
		}
		res, err := t.q.ExecContext(ctx, "INSERT INTO thing_macs (mac, thing_id) VALUES ("+t.ph(1)+", "+t.ph(2)+") ON CONFLICT DO NOTHING", m, id)
		if err != nil {
			return fmt.Errorf("thing %s: add MAC %s: %w", id, m, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.Conflict("macAddresses", m, fmt.Errorf("macAddresses %q: %w", m, store.ErrConflict))
		}
	}
	return nil
}

func (t *txn) DeleteThing(ctx context.Context, id string, ifRevision int64) error {
	return t.deleteIdentity(ctx, store.KindThing, id, ifRevision)
}

func (t *txn) ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error) {
	ths, _, total, err := t.listThings(ctx, q, relatedOf{})
	return ths, total, err
}

func (t *txn) ListThingsWith(ctx context.Context, q store.Query, specs []store.RelSpec) ([]*store.Thing, []store.Related, error) {
	q.NoTotal = true
	ths, rel, _, err := t.listThings(ctx, q, relatedOf{self: store.KindThing, specs: specs})
	return ths, rel, err
}

// listThings lists the things of q with what with reads of each.
func (t *txn) listThings(ctx context.Context, q store.Query, with relatedOf) ([]*store.Thing, []store.Related, int, error) {
	var (
		ths []*store.Thing
		rel []store.Related
	)
	cols := make([][]byte, len(with.specs))
	more := make([]any, len(cols))
	for i := range cols {
		more[i] = &cols[i]
	}
	total, err := t.list(ctx, thingKind, q, thingColumns, with, func(rows *sql.Rows) error {
		th, err := scanThing(rows, more...)
		if err != nil {
			return err
		}
		ths = append(ths, th)
		for i, col := range cols {
			if rel, err = with.decode(rel, i, th.ID, col); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return ths, rel, total, nil
}
