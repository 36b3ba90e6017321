package psk_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

func setup(t testing.TB) (store.Store, secrets.Key, *store.Thing, *store.Thing) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var master secrets.Key
	master[0] = 7
	a := &store.Thing{DisplayName: "a", SerialNumber: "A-1", Status: store.StatusActive}
	b := &store.Thing{DisplayName: "b", SerialNumber: "B-1", Status: store.StatusActive}
	for _, th := range []*store.Thing{a, b} {
		if err := st.CreateThing(context.Background(), th); err != nil {
			t.Fatal(err)
		}
	}
	return st, master, a, b
}

func issue(t testing.TB, st store.Store, master secrets.Key, thingID string) psk.Issued {
	t.Helper()
	in, row, err := psk.Issue(master, thingID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutThingPSK(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIssueAndKey(t *testing.T) {
	st, master, a, _ := setup(t)
	in := issue(t, st, master, a.ID)
	if len(in.Key) != 43 || !strings.HasPrefix(in.Identity, a.ID+".") {
		t.Fatalf("issued %q with a key of %d characters", in.Identity, len(in.Key))
	}
	row, err := st.GetThingPSK(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(row.Sealed), in.Key) {
		t.Fatal("the store holds the key in clear")
	}
	th, key, err := psk.NewKeys(st, master).Key(context.Background(), []byte(in.Identity))
	if err != nil || th.ID != a.ID || string(key) != in.Key {
		t.Fatalf("Key: %v, %v, %v", th, string(key), err)
	}
}

// TestKeyRefusals: each way an identity must get no key.
func TestKeyRefusals(t *testing.T) {
	st, master, a, b := setup(t)
	keys := psk.NewKeys(st, master)
	ctx := context.Background()
	old := issue(t, st, master, a.ID)
	cur := issue(t, st, master, a.ID) // re-issued: old names nothing
	bID := psk.Identity{ThingID: b.ID, KeyID: strings.Split(cur.Identity, ".")[1]}
	for name, identity := range map[string]string{
		"replaced key":                   old.Identity,
		"another thing with a's key id":  bID.String(), // b has no key at all
		"unknown thing":                  "0193a0c2-0000-7000-8000-000000000000." + strings.Split(cur.Identity, ".")[1],
		"no key id":                      a.ID,
		"upper-case key id":              strings.ToUpper(cur.Identity),
		"empty":                          "",
		"too long":                       strings.Repeat("a", psk.MaxIdentity) + ".0011223344556677",
		"a dot in the thing id":          "x." + cur.Identity,
		"key id of the wrong length":     a.ID + ".00112233",
		"key id that is not hexadecimal": a.ID + ".001122334455667g",
	} {
		if _, _, err := keys.Key(ctx, []byte(identity)); !errors.Is(err, psk.ErrRefused) {
			t.Errorf("%s (%q): %v, want ErrRefused", name, identity, err)
		}
	}
	if _, _, err := keys.Key(ctx, []byte(cur.Identity)); err != nil {
		t.Fatalf("the current key: %v", err)
	}
	// A disabled thing gets no key.
	if _, err := st.UpdateThing(ctx, a.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.Key(ctx, []byte(cur.Identity)); !errors.Is(err, psk.ErrRefused) {
		t.Fatalf("disabled thing: %v", err)
	}
}

// thingReads counts the whole things read from the store.
type thingReads struct {
	psk.Reader
	n int
}

func (r *thingReads) GetThing(ctx context.Context, id string) (*store.Thing, error) {
	r.n++
	return r.Reader.GetThing(ctx, id)
}

// TestKeptThingFollowsItsRevision: the thing a handshake gets is read once
// and kept, and never outlives a change: a renamed thing comes back
// renamed, a disabled one is refused.
func TestKeptThingFollowsItsRevision(t *testing.T) {
	st, master, a, _ := setup(t)
	in := issue(t, st, master, a.ID)
	reads := &thingReads{Reader: st}
	keys := psk.NewKeys(reads, master)
	ctx := context.Background()
	for range 3 {
		if th, _, err := keys.Key(ctx, []byte(in.Identity)); err != nil || th.DisplayName != "a" {
			t.Fatalf("Key: %v, %v", th, err)
		}
	}
	if reads.n != 1 {
		t.Fatalf("three handshakes read the whole thing %d times, want once", reads.n)
	}
	if _, err := st.UpdateThing(ctx, a.ID, 0, func(th *store.Thing) error { th.DisplayName = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if th, _, err := keys.Key(ctx, []byte(in.Identity)); err != nil || th.DisplayName != "renamed" {
		t.Fatalf("after a rename: %v, %v", th, err)
	}
	if _, err := st.UpdateThing(ctx, a.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.Key(ctx, []byte(in.Identity)); !errors.Is(err, psk.ErrRefused) {
		t.Fatalf("disabled after its thing was kept: %v, want ErrRefused", err)
	}
}

// TestSealedKeyBoundToItsThing: a sealed key copied onto another thing's
// row (someone writing the database) does not open there.
func TestSealedKeyBoundToItsThing(t *testing.T) {
	st, master, a, b := setup(t)
	issue(t, st, master, a.ID)
	row, err := st.GetThingPSK(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	row.ThingID = b.ID
	if _, err := st.PutThingPSK(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	forged := psk.Identity{ThingID: b.ID, KeyID: row.KeyID}
	th, key, err := psk.NewKeys(st, master).Key(context.Background(), []byte(forged.String()))
	if err == nil {
		t.Fatalf("a's key opened as b's: %v %q", th.ID, key)
	}
}

// TestSealRefusesBadInput: Seal names what is wrong with what it is given.
func TestSealRefusesBadInput(t *testing.T) {
	var master secrets.Key
	for name, in := range map[string]psk.Issued{
		"short key":     {Identity: "t1.0011223344556677", Key: "c2hvcnQ"},
		"not base64url": {Identity: "t1.0011223344556677", Key: strings.Repeat("+", 43)},
		"bad identity":  {Identity: "t1", Key: strings.Repeat("A", 43)},
		"bad thing id":  {Identity: "t 1.0011223344556677", Key: strings.Repeat("A", 43)},
	} {
		if _, err := psk.Seal(master, in); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
	if _, _, err := psk.Issue(master, "not/an id"); err == nil {
		t.Error("Issue took a thing id its identity cannot carry")
	}
}

func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{"0193a0c2-0000-7000-8000-000000000000.0011223344556677", "", ".", "a.b", "x.0011223344556677.0011223344556677"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := psk.ParseIdentity(b)
		if err != nil {
			if !errors.Is(err, psk.ErrRefused) {
				t.Fatalf("%q: %v does not wrap ErrRefused", b, err)
			}
			return
		}
		if id.String() != string(b) {
			t.Fatalf("%q parsed as %+v, which prints %q", b, id, id.String())
		}
	})
}
