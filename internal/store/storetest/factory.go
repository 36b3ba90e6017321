package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// factoryThings stores n things of model and returns their ids in order.
func factoryThings(t *testing.T, s store.Store, model string, n int) []string {
	t.Helper()
	ts := make([]*store.Thing, n)
	for i := range ts {
		ts[i] = &store.Thing{Type: store.ThingDevice, Model: model, SerialNumber: fmt.Sprintf("%s-%06d", model, i+1)}
	}
	errs, err := s.CreateThings(ctx(t), ts)
	must(t, err)
	ids := make([]string, n)
	for i, e := range errs {
		must(t, e)
		ids[i] = ts[i].ID
	}
	return ids
}

// testFactoryBatches: batches are listed newest first and paged, their
// things by id; adding a thing twice counts once; a deleted thing leaves
// its batch; unknown batches and things are ErrNotFound.
func testFactoryBatches(t *testing.T, s store.Store) {
	old := &store.FactoryBatch{Created: base, Actor: "cli", Model: "SPK", Manufacturer: "Acme", Count: 3,
		FirstSerial: "SPK-000001", LastSerial: "SPK-000003", CASubject: "CN=thingid device CA", CAFingerprint: fingerprint(7),
		Validity: 43800 * time.Hour}
	must(t, s.PutFactoryBatch(ctx(t), old))
	if old.ID == "" || !old.Created.Equal(base) || old.Issued != 0 {
		t.Fatalf("created: %+v", old)
	}
	got, err := s.GetFactoryBatch(ctx(t), old.ID)
	must(t, err)
	if !reflect.DeepEqual(got, old) {
		t.Fatalf("GetFactoryBatch:\n got %+v\nwant %+v", got, old)
	}
	// Put again: only the plan changes.
	again := &store.FactoryBatch{ID: old.ID, Created: base.Add(time.Minute), Actor: "other", Model: "X", Count: 5, FirstSerial: "SPK-000001", LastSerial: "SPK-000005"}
	must(t, s.PutFactoryBatch(ctx(t), again))
	want := *old
	want.Count, want.LastSerial = 5, "SPK-000005"
	if !reflect.DeepEqual(again, &want) {
		t.Fatalf("put again:\n got %+v\nwant %+v", again, &want)
	}
	*old = want
	if err := s.PutFactoryBatch(ctx(t), &store.FactoryBatch{Count: 1}); err == nil {
		t.Error("a batch without a model was stored")
	}
	_, err = s.GetFactoryBatch(ctx(t), "missing")
	wantErr(t, err, store.ErrNotFound)

	newer := &store.FactoryBatch{Created: base.Add(time.Hour), Model: "LMP", Count: 2}
	must(t, s.PutFactoryBatch(ctx(t), newer))
	if now := (&store.FactoryBatch{Model: "X", Count: 1}); s.PutFactoryBatch(ctx(t), now) != nil || now.Created.IsZero() {
		t.Fatalf("Created not set: %+v", now)
	}
	newest := &store.FactoryBatch{Created: base.Add(2 * time.Hour), Model: "TMP", Count: 1}
	must(t, s.PutFactoryBatch(ctx(t), newest))
	page, total, err := s.ListFactoryBatches(ctx(t), 0, 2)
	must(t, err)
	if total != 4 || len(page) != 2 || page[0].ID != newest.ID || page[1].ID != newer.ID {
		t.Fatalf("first page: %d %+v", total, page)
	}
	page, _, err = s.ListFactoryBatches(ctx(t), 2, 2)
	must(t, err)
	if len(page) != 2 || page[0].ID != old.ID { // and the one made now, before base
		t.Fatalf("second page: %+v", page)
	}
	if _, _, err := s.ListFactoryBatches(ctx(t), -1, 2); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("a negative offset: %v", err)
	}

	ids := factoryThings(t, s, "SPK", 3)
	must(t, s.AddFactoryBatchThings(ctx(t), old.ID, ids[:2]))
	must(t, s.AddFactoryBatchThings(ctx(t), old.ID, ids[1:])) // ids[1] again
	got, err = s.GetFactoryBatch(ctx(t), old.ID)
	must(t, err)
	if got.Issued != 3 {
		t.Errorf("issued %d, want 3", got.Issued)
	}
	wantErr(t, s.AddFactoryBatchThings(ctx(t), "missing", ids), store.ErrNotFound)
	must(t, s.AddFactoryBatchThings(ctx(t), newest.ID, ids[2:])) // a thing of two batches
	for i, want := range [][]string{{old.ID}, {old.ID}, {old.ID, newest.ID}} {
		bs, err := s.ThingFactoryBatches(ctx(t), ids[i])
		must(t, err)
		var got []string
		for _, b := range bs {
			got = append(got, b.ID)
		}
		if !reflect.DeepEqual(got, want) || bs[0].Model != "SPK" {
			t.Errorf("the batches of thing %d: %v, want %v", i, got, want)
		}
	}
	if bs, err := s.ThingFactoryBatches(ctx(t), "no-such-thing"); err != nil || len(bs) != 0 {
		t.Errorf("the batches of no thing: %v %v", bs, err)
	}
	wantErr(t, s.AddFactoryBatchThings(ctx(t), newer.ID, []string{"no-such-thing"}), store.ErrNotFound)

	things, total, err := s.ListFactoryBatchThings(ctx(t), old.ID, 1, 5)
	must(t, err)
	if total != 3 || len(things) != 2 || things[0].ID != ids[1] || things[1].ID != ids[2] || things[0].SerialNumber != "SPK-000002" {
		t.Fatalf("batch things: %d %+v", total, things)
	}
	must(t, s.DeleteThing(ctx(t), ids[0], 0))
	things, total, err = s.ListFactoryBatchThings(ctx(t), old.ID, 0, 5)
	must(t, err)
	if total != 2 || len(things) != 2 || things[0].ID != ids[1] {
		t.Fatalf("after a delete: %d %+v", total, things)
	}
	if got, _ := s.GetFactoryBatch(ctx(t), old.ID); got.Issued != 3 {
		t.Errorf("a delete changed issued to %d", got.Issued)
	}
	if _, total, err := s.ListFactoryBatchThings(ctx(t), newer.ID, 0, 5); err != nil || total != 0 {
		t.Errorf("an empty batch: %d %v", total, err)
	}
	_, _, err = s.ListFactoryBatchThings(ctx(t), "missing", 0, 5)
	wantErr(t, err, store.ErrNotFound)
}

// testFactoryBatchInTx: a batch and its things are stored in one
// transaction with the things, or not at all.
func testFactoryBatchInTx(t *testing.T, s store.Store) {
	b := &store.FactoryBatch{Model: "CAM", Count: 2}
	boom := errors.New("rolled back")
	err := s.WithTx(ctx(t), func(tx store.Tx) error {
		ts := []*store.Thing{{Type: store.ThingDevice, Model: "CAM", SerialNumber: "CAM-1"}, {Type: store.ThingDevice, Model: "CAM", SerialNumber: "CAM-2"}}
		if _, err := tx.CreateThings(ctx(t), ts); err != nil {
			return err
		}
		if err := tx.PutFactoryBatch(ctx(t), b); err != nil {
			return err
		}
		if err := tx.AddFactoryBatchThings(ctx(t), b.ID, []string{ts[0].ID, ts[1].ID}); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, err, boom)
	_, err = s.GetFactoryBatch(ctx(t), b.ID)
	wantErr(t, err, store.ErrNotFound)
	if _, total, _ := s.ListThings(ctx(t), store.Query{}); total != 0 {
		t.Errorf("%d things after the rollback", total)
	}
}

// testThingsOfCAs: a CA's things are those holding a certificate it
// issued (by the issuer) or that chained to it (CertRef.CA, a certificate
// of an intermediate), each thing once.
func testThingsOfCAs(t *testing.T, s store.Store) {
	cert := func(i int, issuer, ca string) store.CertRef {
		return store.CertRef{FingerprintSHA256: fingerprint(i), Issuer: issuer, CA: ca, NotAfter: base.Add(time.Hour)}
	}
	mk := func(serial string, certs ...store.CertRef) *store.Thing {
		th := &store.Thing{Type: store.ThingDevice, Model: "M", SerialNumber: serial, Certificates: certs}
		must(t, s.CreateThing(ctx(t), th))
		return th
	}
	acme := &store.ManufacturerCA{ID: "acme", Subject: "CN=Acme CA"}
	other := &store.ManufacturerCA{ID: "other", Subject: "CN=Other CA"}
	nobody := &store.ManufacturerCA{ID: "nobody", Subject: "CN=Nobody"}
	mk("1", cert(1, "CN=Acme CA", ""), cert(2, "CN=Acme CA", "acme")) // renewed: one thing
	two := mk("2", cert(3, "CN=Acme CA", ""))
	mk("3", cert(4, "CN=Other CA", ""))
	mk("4")
	mk("5", cert(6, "CN=Acme Intermediate 7", "acme")) // from an intermediate
	got, err := s.CountThingsOfCAs(ctx(t), []*store.ManufacturerCA{acme, other, nobody})
	must(t, err)
	if want := map[string]int{"acme": 3, "other": 1, "nobody": 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	// A certificate added later is counted too; the one replaced no more.
	_, err = s.UpdateThing(ctx(t), two.ID, 0, func(th *store.Thing) error {
		th.Certificates = []store.CertRef{cert(5, "CN=Other Intermediate", "other")}
		return nil
	})
	must(t, err)
	got, err = s.CountThingsOfCAs(ctx(t), []*store.ManufacturerCA{acme, other})
	must(t, err)
	if got["acme"] != 2 || got["other"] != 2 {
		t.Fatalf("after an update: %v", got)
	}
	// The CA a certificate chained to is kept with the thing.
	th, err := s.GetThing(ctx(t), two.ID)
	must(t, err)
	if len(th.Certificates) != 1 || th.Certificates[0].CA != "other" {
		t.Fatalf("the certificate read back: %+v", th.Certificates)
	}
}
