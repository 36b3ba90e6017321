package storetest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// testRevokedCWTs: a revoked cti is listed until its token's exp, revoking
// it again keeps the later exp, bad input names its field, and purging
// drops what expired.
func testRevokedCWTs(t *testing.T, s store.Store) {
	a, b := []byte("cti-aaaaaaaaaaaa"), []byte("cti-bbbbbbbbbbbb")
	ra := &store.RevokedCWT{CTI: a, ExpiresAt: base.Add(time.Hour)}
	must(t, s.RevokeCWT(ctx(t), ra))
	if ra.Revoked.IsZero() {
		t.Fatal("Revoked not set")
	}
	must(t, s.RevokeCWT(ctx(t), &store.RevokedCWT{CTI: b, ExpiresAt: base.Add(2 * time.Hour), Revoked: base}))
	// Again, with an earlier exp: the later one stays; with a later one, it wins.
	must(t, s.RevokeCWT(ctx(t), &store.RevokedCWT{CTI: b, ExpiresAt: base.Add(time.Minute)}))
	must(t, s.RevokeCWT(ctx(t), &store.RevokedCWT{CTI: a, ExpiresAt: base.Add(3 * time.Hour)}))

	got, err := s.ListRevokedCWTs(ctx(t), base)
	must(t, err)
	if len(got) != 2 || !bytes.Equal(got[0].CTI, a) || !got[0].ExpiresAt.Equal(base.Add(3*time.Hour)) ||
		!bytes.Equal(got[1].CTI, b) || !got[1].ExpiresAt.Equal(base.Add(2*time.Hour)) || !got[1].Revoked.Equal(base) {
		t.Fatalf("ListRevokedCWTs: %+v", got)
	}
	got, err = s.ListRevokedCWTs(ctx(t), base.Add(150*time.Minute))
	must(t, err)
	if len(got) != 1 || !bytes.Equal(got[0].CTI, a) {
		t.Fatalf("after b's exp: %+v", got)
	}

	for name, r := range map[string]*store.RevokedCWT{
		"cti": {ExpiresAt: base}, "cti ": {CTI: bytes.Repeat([]byte{1}, 65), ExpiresAt: base}, "expires_at": {CTI: a},
	} {
		if err := s.RevokeCWT(ctx(t), r); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(name)) {
			t.Errorf("RevokeCWT without a valid %s: %v", name, err)
		}
	}

	if _, err := s.PurgeExpired(ctx(t), base.Add(150*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err = s.ListRevokedCWTs(ctx(t), base.Add(-time.Hour))
	must(t, err)
	if len(got) != 1 || !bytes.Equal(got[0].CTI, a) {
		t.Fatalf("after purging: %+v", got)
	}
}
