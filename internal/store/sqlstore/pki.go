package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Manufacturer CAs and certificate revocations (store/pki.go).

const caColumns = "id, name, fingerprint, subject, not_after, certificate, template, created"

func (t *txn) CreateManufacturerCA(ctx context.Context, ca *store.ManufacturerCA) error {
	switch {
	case len(ca.Certificate) == 0:
		return errors.New("manufacturer CA: Certificate is required")
	case ca.FingerprintSHA256 == "":
		return errors.New("manufacturer CA: FingerprintSHA256 is required")
	case ca.NotAfter.IsZero():
		return errors.New("manufacturer CA: NotAfter is required")
	}
	tmpl, err := json.Marshal(ca.Template)
	if err != nil {
		return fmt.Errorf("manufacturer CA: template: %w", err)
	}
	x := *ca
	if x.ID == "" {
		x.ID = newID()
	}
	x.Created, x.NotAfter = orNow(ca.Created), normTime(ca.NotAfter)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO pki_manufacturer_cas ("+caColumns+") VALUES "+
		t.placeholders(1, 8, 1)+" ON CONFLICT DO NOTHING",
		x.ID, x.Name, x.FingerprintSHA256, x.Subject, f.timeArg(x.NotAfter), x.Certificate, string(tmpl), f.timeArg(x.Created)))
	if err != nil {
		return fmt.Errorf("create manufacturer CA: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("manufacturer CA %s (SHA-256 %s): %w", x.ID, x.FingerprintSHA256, store.ErrConflict)
	}
	*ca = x
	return nil
}

func scanCA(r scanner) (*store.ManufacturerCA, error) {
	var (
		ca   store.ManufacturerCA
		tmpl []byte
	)
	if err := r.Scan(&ca.ID, &ca.Name, &ca.FingerprintSHA256, &ca.Subject, timeCol{&ca.NotAfter},
		&ca.Certificate, &tmpl, timeCol{&ca.Created}); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(tmpl, &ca.Template); err != nil {
		return nil, fmt.Errorf("manufacturer CA %s: template: %w", ca.ID, err)
	}
	return &ca, nil
}

func (t *txn) GetManufacturerCA(ctx context.Context, id string) (*store.ManufacturerCA, error) {
	ca, err := scanCA(t.q.QueryRowContext(ctx, "SELECT "+caColumns+" FROM pki_manufacturer_cas WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("manufacturer CA %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get manufacturer CA %s: %w", id, err)
	}
	return ca, nil
}

func (t *txn) ListManufacturerCAs(ctx context.Context) ([]*store.ManufacturerCA, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT "+caColumns+" FROM pki_manufacturer_cas ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("list manufacturer CAs: %w", err)
	}
	defer rows.Close()
	var out []*store.ManufacturerCA
	for rows.Next() {
		ca, err := scanCA(rows)
		if err != nil {
			return nil, fmt.Errorf("list manufacturer CAs: %w", err)
		}
		out = append(out, ca)
	}
	return out, rows.Err()
}

func (t *txn) DeleteManufacturerCA(ctx context.Context, id string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM pki_manufacturer_cas WHERE id = "+t.ph(1), id))
	if err != nil {
		return fmt.Errorf("delete manufacturer CA %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("manufacturer CA %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// lockRevocations makes revocations commit in seq order in PostgreSQL, where
// identity values are handed out before commit: without it a node reading
// revocations after the last seq it saw could skip one that commits after a
// higher seq. SQLite has a single writer.
const lockRevocations = "SELECT pg_advisory_xact_lock(7351226109)" // arbitrary, fixed key: "thingid revocations"

func (t *txn) RevokeCert(ctx context.Context, r *store.RevokedCert) error {
	if r.FingerprintSHA256 == "" {
		return errors.New("revoke certificate: FingerprintSHA256 is required")
	}
	f := t.flavor()
	if f == Postgres {
		if _, err := t.q.ExecContext(ctx, lockRevocations); err != nil {
			return fmt.Errorf("revoke certificate: lock: %w", err)
		}
	}
	x := *r
	x.RevokedAt, x.NotAfter = orNow(r.RevokedAt), normOpt(r.NotAfter)
	err := t.q.QueryRowContext(ctx, "INSERT INTO pki_revoked_certs (fingerprint, serial, authority, issuer, thing_id, reason, revoked_at, not_after) VALUES "+
		t.placeholders(1, 8, 1)+" ON CONFLICT DO NOTHING RETURNING seq",
		x.FingerprintSHA256, x.SerialNumber, x.Authority, x.Issuer, x.ThingID, x.Reason, f.timeArg(x.RevokedAt), f.nullTimeArg(x.NotAfter)).Scan(&x.Seq)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("certificate SHA-256 %s is revoked already: %w", x.FingerprintSHA256, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("revoke certificate %s: %w", x.FingerprintSHA256, err)
	}
	*r = x
	return nil
}

func (t *txn) ListRevokedCerts(ctx context.Context, afterSeq int64, limit int) ([]*store.RevokedCert, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list revoked certificates: limit %d must be positive", limit)
	}
	rows, err := t.q.QueryContext(ctx, "SELECT seq, fingerprint, serial, authority, issuer, thing_id, reason, revoked_at, not_after FROM pki_revoked_certs WHERE seq > "+
		t.ph(1)+" ORDER BY seq LIMIT "+t.ph(2), afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("list revoked certificates: %w", err)
	}
	defer rows.Close()
	var out []*store.RevokedCert
	for rows.Next() {
		var r store.RevokedCert
		if err := rows.Scan(&r.Seq, &r.FingerprintSHA256, &r.SerialNumber, &r.Authority, &r.Issuer, &r.ThingID, &r.Reason,
			timeCol{&r.RevokedAt}, timeCol{&r.NotAfter}); err != nil {
			return nil, fmt.Errorf("list revoked certificates: %w", err)
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

func (t *txn) ListExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]store.ThingCertificate, int, error) {
	if limit <= 0 {
		return nil, 0, fmt.Errorf("list expiring certificates: limit %d must be positive", limit)
	}
	const from = " FROM thing_certificates AS c WHERE c.not_after < "
	const live = " AND NOT EXISTS (SELECT 1 FROM pki_revoked_certs AS r WHERE r.fingerprint = c.fingerprint)"
	b := t.flavor().timeArg(before)
	var total int
	if err := t.q.QueryRowContext(ctx, "SELECT count(*)"+from+t.ph(1)+live, b).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("list expiring certificates: %w", err)
	}
	rows, err := t.q.QueryContext(ctx, "SELECT c.thing_id, c.fingerprint, c.not_after"+from+t.ph(1)+live+
		" ORDER BY c.not_after, c.thing_id, c.fingerprint LIMIT "+t.ph(2), b, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list expiring certificates: %w", err)
	}
	defer rows.Close()
	var out []store.ThingCertificate
	for rows.Next() {
		var c store.ThingCertificate
		if err := rows.Scan(&c.ThingID, &c.FingerprintSHA256, timeCol{&c.NotAfter}); err != nil {
			return nil, 0, fmt.Errorf("list expiring certificates: %w", err)
		}
		out = append(out, c)
	}
	return out, total, rows.Err()
}

// The Store's own PKI methods: writes in their own write transaction, reads on
// the reader pool.

func (s *Store) CreateManufacturerCA(ctx context.Context, ca *store.ManufacturerCA) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateManufacturerCA(ctx, ca) })
}

func (s *Store) GetManufacturerCA(ctx context.Context, id string) (*store.ManufacturerCA, error) {
	return s.single().GetManufacturerCA(ctx, id)
}

func (s *Store) ListManufacturerCAs(ctx context.Context) ([]*store.ManufacturerCA, error) {
	return s.single().ListManufacturerCAs(ctx)
}

func (s *Store) DeleteManufacturerCA(ctx context.Context, id string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteManufacturerCA(ctx, id) })
}

func (s *Store) RevokeCert(ctx context.Context, r *store.RevokedCert) error {
	return s.withTx(ctx, func(t *txn) error { return t.RevokeCert(ctx, r) })
}

func (s *Store) ListRevokedCerts(ctx context.Context, afterSeq int64, limit int) ([]*store.RevokedCert, error) {
	return s.single().ListRevokedCerts(ctx, afterSeq, limit)
}

// PutCAFiles inserts every file or, when one is there already, none.
func (t *txn) PutCAFiles(ctx context.Context, files map[string][]byte) error {
	if len(files) == 0 {
		return errors.New("CA files: none given")
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if name == "" || len(files[name]) == 0 {
			return fmt.Errorf("CA file %q: name and content are required", name)
		}
		n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO pki_ca_files (name, content) VALUES ("+t.ph(1)+", "+t.ph(2)+
			") ON CONFLICT DO NOTHING", name, files[name]))
		if err != nil {
			return fmt.Errorf("store CA file %s: %w", name, err)
		}
		if n == 0 {
			return fmt.Errorf("CA file %s: %w", name, store.ErrConflict)
		}
	}
	return nil
}

func (t *txn) GetCAFiles(ctx context.Context) (map[string][]byte, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT name, content FROM pki_ca_files")
	if err != nil {
		return nil, fmt.Errorf("read CA files: %w", err)
	}
	defer rows.Close()
	files := map[string][]byte{}
	for rows.Next() {
		var (
			name    string
			content []byte
		)
		if err := rows.Scan(&name, &content); err != nil {
			return nil, fmt.Errorf("read CA files: %w", err)
		}
		files[name] = content
	}
	return files, rows.Err()
}

func (s *Store) PutCAFiles(ctx context.Context, files map[string][]byte) error {
	return s.withTx(ctx, func(t *txn) error { return t.PutCAFiles(ctx, files) })
}

func (s *Store) GetCAFiles(ctx context.Context) (map[string][]byte, error) {
	return s.single().GetCAFiles(ctx)
}

func (s *Store) ListExpiringCertificates(ctx context.Context, before time.Time, limit int) (cs []store.ThingCertificate, total int, err error) {
	err = s.read(ctx, func(t *txn) error {
		cs, total, err = t.ListExpiringCertificates(ctx, before, limit)
		return err
	})
	return cs, total, err
}
