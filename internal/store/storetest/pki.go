package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// PKI runs the conformance suite of store.PKI; open returns a fresh, empty
// store for each subtest.
func PKI(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ManufacturerCAs", testManufacturerCAs},
		{"Revocations", testRevocations},
		{"RevocationInTx", testRevocationInTx},
		{"ConcurrentRevocations", testConcurrentRevocations},
		{"CAFiles", testCAFiles},
		{"ConcurrentCAFiles", testConcurrentCAFiles},
		{"ExpiringCertificates", testExpiringCertificates},
		{"FactoryBatches", testFactoryBatches},
		{"FactoryBatchInTx", testFactoryBatchInTx},
		{"ThingsOfCAs", testThingsOfCAs},
		{"ThingPSKs", testThingPSKs},
		{"RevokedCWTs", testRevokedCWTs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func fingerprint(i int) string { return fmt.Sprintf("%064x", i) }

func testManufacturerCAs(t *testing.T, s store.Store) {
	a := &store.ManufacturerCA{
		Name: "Acme devices", Certificate: []byte{0x30, 0x01, 0x02}, FingerprintSHA256: fingerprint(1),
		Subject: "CN=Acme Device CA", NotAfter: base.Add(24 * time.Hour),
		Template: store.ProvisioningTemplate{
			Manufacturer: "Acme", Model: "T-1000", ThingType: store.ThingDevice, SerialFrom: "serialNumber",
			Attributes: map[string]any{"color": "red", "rooms": 3.0, "outdoor": false, "tags": []any{"a", "b"}},
		},
	}
	must(t, s.CreateManufacturerCA(ctx(t), a))
	if a.ID == "" || a.Created.IsZero() || a.Created.Location() != time.UTC {
		t.Fatalf("ID and Created not set: %+v", a)
	}
	got, err := s.GetManufacturerCA(ctx(t), a.ID)
	must(t, err)
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, a)
	}
	// The same certificate twice is a conflict, even under another name.
	dup := *a
	dup.ID, dup.Name = "", "again"
	wantErr(t, s.CreateManufacturerCA(ctx(t), &dup), store.ErrConflict)

	b := &store.ManufacturerCA{Name: "Beta", Certificate: []byte{0x30}, FingerprintSHA256: fingerprint(2), NotAfter: base,
		Created: a.Created.Add(time.Second), Template: store.ProvisioningTemplate{Manufacturer: "Beta", Model: "B", SerialFrom: "commonName"}}
	must(t, s.CreateManufacturerCA(ctx(t), b))
	list, err := s.ListManufacturerCAs(ctx(t))
	must(t, err)
	if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID || list[1].Template.Attributes != nil {
		t.Fatalf("list: %+v", list)
	}

	if err := s.CreateManufacturerCA(ctx(t), &store.ManufacturerCA{FingerprintSHA256: fingerprint(3), NotAfter: base}); err == nil {
		t.Fatal("a CA without a certificate was stored")
	}
	must(t, s.DeleteManufacturerCA(ctx(t), a.ID))
	_, err = s.GetManufacturerCA(ctx(t), a.ID)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteManufacturerCA(ctx(t), a.ID), store.ErrNotFound)
	// Once deleted, the certificate can be registered again.
	a.ID = ""
	must(t, s.CreateManufacturerCA(ctx(t), a))
}

func testRevocations(t *testing.T, s store.Store) {
	r1 := &store.RevokedCert{FingerprintSHA256: fingerprint(1), SerialNumber: "0a1b", Authority: "platform",
		Issuer: "CN=thingid device issuing CA", ThingID: "thing-1", Reason: 1, NotAfter: base}
	must(t, s.RevokeCert(ctx(t), r1))
	if r1.Seq <= 0 || r1.RevokedAt.IsZero() || r1.RevokedAt.Location() != time.UTC {
		t.Fatalf("Seq and RevokedAt not set: %+v", r1)
	}
	// Only the fingerprint known: the optional fields stay empty.
	r2 := &store.RevokedCert{FingerprintSHA256: fingerprint(2), RevokedAt: base}
	must(t, s.RevokeCert(ctx(t), r2))
	if r2.Seq <= r1.Seq {
		t.Fatalf("seq %d after %d", r2.Seq, r1.Seq)
	}
	again := &store.RevokedCert{FingerprintSHA256: fingerprint(1), Reason: 4}
	wantErr(t, s.RevokeCert(ctx(t), again), store.ErrConflict)
	if err := s.RevokeCert(ctx(t), &store.RevokedCert{}); err == nil || errors.Is(err, store.ErrConflict) {
		t.Fatalf("revocation without fingerprint: %v", err)
	}

	all, err := s.ListRevokedCerts(ctx(t), 0, 10)
	must(t, err)
	if len(all) != 2 || !reflect.DeepEqual(all[0], r1) || !reflect.DeepEqual(all[1], r2) {
		t.Fatalf("list:\n got %+v %+v\nwant %+v %+v", all[0], all[len(all)-1], r1, r2)
	}
	page, err := s.ListRevokedCerts(ctx(t), 0, 1)
	must(t, err)
	if len(page) != 1 || page[0].Seq != r1.Seq {
		t.Fatalf("first page: %+v", page)
	}
	page, err = s.ListRevokedCerts(ctx(t), page[0].Seq, 1)
	must(t, err)
	if len(page) != 1 || page[0].Seq != r2.Seq {
		t.Fatalf("second page: %+v", page)
	}
	page, err = s.ListRevokedCerts(ctx(t), r2.Seq, 10)
	must(t, err)
	if len(page) != 0 {
		t.Fatalf("after the last: %+v", page)
	}
	if _, err := s.ListRevokedCerts(ctx(t), 0, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

// testRevocationInTx: a duplicate revocation leaves the transaction usable
// (revoking every certificate of a thing meets ones revoked before), and a
// rolled-back revocation is not stored.
func testRevocationInTx(t *testing.T, s store.Store) {
	must(t, s.RevokeCert(ctx(t), &store.RevokedCert{FingerprintSHA256: fingerprint(1)}))
	must(t, s.WithTx(ctx(t), func(tx store.Tx) error {
		wantErr(t, tx.RevokeCert(ctx(t), &store.RevokedCert{FingerprintSHA256: fingerprint(1)}), store.ErrConflict)
		if err := tx.RevokeCert(ctx(t), &store.RevokedCert{FingerprintSHA256: fingerprint(2)}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx(t), store.AuditRecord{Actor: "cli", Action: "cert.revoke"})
	}))
	boom := errors.New("boom")
	err := s.WithTx(ctx(t), func(tx store.Tx) error {
		must(t, tx.RevokeCert(ctx(t), &store.RevokedCert{FingerprintSHA256: fingerprint(3)}))
		return boom
	})
	wantErr(t, err, boom)
	all, err := s.ListRevokedCerts(ctx(t), 0, 10)
	must(t, err)
	if len(all) != 2 || all[1].FingerprintSHA256 != fingerprint(2) {
		t.Fatalf("revocations: %+v", all)
	}
}

// testConcurrentRevocations: concurrent revocations of distinct certificates
// all land with distinct, increasing Seq; of concurrent revocations of one
// certificate exactly one wins.
func testConcurrentRevocations(t *testing.T, s store.Store) {
	const n = 16
	errs := race(n, func(i int) error {
		return s.RevokeCert(ctx(t), &store.RevokedCert{FingerprintSHA256: fingerprint(100 + i)})
	})
	for _, err := range errs {
		must(t, err)
	}
	all, err := s.ListRevokedCerts(ctx(t), 0, 100)
	must(t, err)
	if len(all) != n {
		t.Fatalf("%d revocations stored, want %d", len(all), n)
	}
	for i := 1; i < n; i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("seq not increasing: %d then %d", all[i-1].Seq, all[i].Seq)
		}
	}
	exactlyOnce(t, race(n, func(int) error {
		return s.RevokeCert(ctx(t), &store.RevokedCert{FingerprintSHA256: fingerprint(1)})
	}), store.ErrConflict)
}

// testCAFiles: the CA files are stored once, all of them or none.
func testCAFiles(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.GetCAFiles(ctx); err != nil || len(got) != 0 {
		t.Fatalf("CA files of an empty store: %v, %v", got, err)
	}
	files := map[string][]byte{"ca.crt": []byte("-----BEGIN CERTIFICATE-----\n"), "ca.key.sealed": {0, 1, 2, 0xff}}
	if err := s.PutCAFiles(ctx, files); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetCAFiles(ctx); err != nil || !reflect.DeepEqual(got, files) {
		t.Fatalf("CA files: %v, %v; want %v", got, err, files)
	}
	// A second set, overlapping in one file, is refused whole.
	other := map[string][]byte{"ca.crt": []byte("another"), "device-ca.crt": []byte("x")}
	if err := s.PutCAFiles(ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second set of CA files: %v, want ErrConflict", err)
	}
	if got, _ := s.GetCAFiles(ctx); !reflect.DeepEqual(got, files) {
		t.Fatalf("after the refused set: %v", got)
	}
	for _, bad := range []map[string][]byte{nil, {"": []byte("x")}, {"a": nil}} {
		if err := s.PutCAFiles(ctx, bad); err == nil {
			t.Errorf("PutCAFiles(%v) accepted", bad)
		}
	}
}

// testConcurrentCAFiles: of nodes storing their CAs at once, one wins whole.
func testConcurrentCAFiles(t *testing.T, s store.Store) {
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.PutCAFiles(t.Context(), map[string][]byte{"ca.crt": fmt.Appendf(nil, "ca %d", i), "ca.key.sealed": fmt.Appendf(nil, "key %d", i)})
		}()
	}
	won := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Fatal(err)
		}
	}
	got, err := s.GetCAFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(got) != 2 || string(got["ca.crt"])[3:] != string(got["ca.key.sealed"])[4:] {
		t.Fatalf("%d of %d won; stored %q", won, n, got)
	}
}

// The certificates recorded on things are listed by when they expire, soonest
// first, without the revoked ones, and follow the things' changes: created
// with a thing (alone or in a batch), replaced by an update, gone with the
// thing.
func testExpiringCertificates(t *testing.T, s store.Store) {
	c := ctx(t)
	cert := func(i int, days int) store.CertRef {
		return store.CertRef{FingerprintSHA256: fingerprint(i), NotAfter: base.Add(time.Duration(days) * 24 * time.Hour)}
	}
	a := &store.Thing{Type: store.ThingDevice, Status: store.StatusActive, SerialNumber: "A",
		Certificates: []store.CertRef{cert(1, 10), cert(2, 40), {FingerprintSHA256: fingerprint(3)}}}
	must(t, s.CreateThing(c, a))
	b := &store.Thing{Type: store.ThingDevice, Status: store.StatusActive, SerialNumber: "B", Certificates: []store.CertRef{cert(4, 5)}}
	none := &store.Thing{Type: store.ThingDevice, Status: store.StatusActive, SerialNumber: "C"}
	errs, err := s.CreateThings(c, []*store.Thing{b, none})
	must(t, err)
	must(t, errors.Join(errs...))
	list := func(days, limit int) ([]string, int) {
		t.Helper()
		cs, total, err := s.ListExpiringCertificates(c, base.Add(time.Duration(days)*24*time.Hour), limit)
		must(t, err)
		var out []string
		for _, x := range cs {
			out = append(out, x.ThingID+"/"+x.FingerprintSHA256[60:]+"@"+x.NotAfter.UTC().Format("01-02"))
		}
		return out, total
	}
	want := func(days, limit int, total int, got ...string) {
		t.Helper()
		l, n := list(days, limit)
		if !reflect.DeepEqual(l, got) || n != total {
			t.Fatalf("expiring within %d days (limit %d): %v of %d, want %v of %d", days, limit, l, n, got, total)
		}
	}
	day := func(days int) string { return base.Add(time.Duration(days) * 24 * time.Hour).UTC().Format("01-02") }
	want(30, 10, 2, b.ID+"/0004@"+day(5), a.ID+"/0001@"+day(10))
	want(30, 1, 2, b.ID+"/0004@"+day(5))
	want(1, 10, 0)
	if _, _, err := s.ListExpiringCertificates(c, base, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
	// Revoked: no longer expiring.
	must(t, s.RevokeCert(c, &store.RevokedCert{FingerprintSHA256: fingerprint(4), ThingID: b.ID}))
	want(30, 10, 1, a.ID+"/0001@"+day(10))
	// An update replaces the thing's certificates.
	_, err = s.UpdateThing(c, a.ID, 0, func(th *store.Thing) error {
		th.Certificates = []store.CertRef{cert(2, 40), cert(5, 20)}
		return nil
	})
	must(t, err)
	want(30, 10, 1, a.ID+"/0005@"+day(20))
	want(50, 10, 2, a.ID+"/0005@"+day(20), a.ID+"/0002@"+day(40))
	// An update that leaves them changes nothing; deleting the thing takes them.
	_, err = s.UpdateThing(c, a.ID, 0, func(th *store.Thing) error { th.DisplayName = "renamed"; return nil })
	must(t, err)
	want(50, 10, 2, a.ID+"/0005@"+day(20), a.ID+"/0002@"+day(40))
	must(t, s.DeleteThing(c, a.ID, 0))
	want(50, 10, 0)
}
