package devimport

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

func newService(t *testing.T) *identity.Service {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return identity.New(st, nil, nil)
}

// devices is a CSV file of n good devices, serials SN-000000 up; bad lists extra
// rows (appended verbatim, after the good ones).
func devices(n int, bad ...string) string {
	var b strings.Builder
	b.WriteString("serialNumber,mac,displayName,attr.batch\n")
	for i := range n {
		fmt.Fprintf(&b, "SN-%06d,02:00:00:%02x:%02x:%02x,Unit %d,B%d\n", i, i>>16&0xff, i>>8&0xff, i&0xff, i, i/1000)
	}
	for _, r := range bad {
		b.WriteString(r + "\n")
	}
	return b.String()
}

func total(t *testing.T, svc *identity.Service, filter store.Expr) int {
	t.Helper()
	_, n, err := svc.ListThings(context.Background(), store.Query{Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func rejectTexts(rs []*RowError) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Error())
	}
	return out
}

func TestImportAndRerun(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	const n = 2000
	file := devices(n,
		"BAD-1,zz:zz:zz:zz:zz:zz,Bad mac,",  // line n+2
		",02:ff:00:00:00:01,No serial,",     // line n+3
		"BAD-3,02:ff:00:00:00:02,x,y,extra", // line n+4
		"bad serial ,,Trailing space,",      // trimmed, so it is fine: line n+5
	)
	opts := Options{Format: CSV, Manufacturer: "Acme", Model: "S1", BatchSize: 700}
	var calls int
	var lastRows, lastBytes int64
	opts.Progress = func(rows, bytes int64) { calls, lastRows, lastBytes = calls+1, rows, bytes }

	sum, err := Import(ctx, svc, strings.NewReader(file), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rows != n+4 || sum.Created != n+1 || sum.Skipped != 0 || sum.Rejected != 3 {
		t.Fatalf("summary %+v", sum)
	}
	if sum.LastLine != n+5 || sum.Bytes != int64(len(file)) {
		t.Errorf("got to line %d byte %d, want line %d byte %d", sum.LastLine, sum.Bytes, n+5, len(file))
	}
	if calls != 3 || lastRows != n+4 || lastBytes != int64(len(file)) {
		t.Errorf("progress: %d calls, last (%d rows, %d bytes)", calls, lastRows, lastBytes)
	}
	wantRejects := []string{
		fmt.Sprintf(`line %d: mac: "zz:zz:zz:zz:zz:zz" is not a MAC address (want 6 or 8 hex octets such as aa:bb:cc:dd:ee:ff)`, n+2),
		fmt.Sprintf("line %d: serialNumber: is required: the serial number identifies the unit", n+3),
		fmt.Sprintf("line %d: has 5 fields, the header has 4", n+4),
	}
	if got := rejectTexts(sum.Rejects); strings.Join(got, "\n") != strings.Join(wantRejects, "\n") {
		t.Errorf("rejects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRejects, "\n"))
	}
	if got := total(t, svc, nil); got != n+1 {
		t.Fatalf("%d things stored, want %d", got, n+1)
	}
	things, _, err := svc.ListThings(ctx, store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "SN-001234"}, Limit: 1})
	if err != nil || len(things) != 1 {
		t.Fatalf("SN-001234: %v %v", things, err)
	}
	got := things[0]
	if got.Manufacturer != "Acme" || got.Model != "S1" || got.DisplayName != "Unit 1234" || got.Type != store.ThingDevice ||
		strings.Join(got.MACAddresses, " ") != "02:00:00:00:04:d2" || got.Attributes["batch"] != "B1" {
		t.Errorf("stored %+v", got)
	}

	// The same file again: nothing new, the same rows rejected.
	sum, err = Import(ctx, svc, strings.NewReader(file), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 0 || sum.Skipped != n+1 || sum.Rejected != 3 {
		t.Fatalf("re-run summary %+v", sum)
	}
	if got := total(t, svc, nil); got != n+1 {
		t.Fatalf("%d things stored after the re-run, want %d", got, n+1)
	}
}

func TestImportConflicts(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	other, err := svc.CreateThing(ctx, "test", &store.Thing{Manufacturer: "Acme", Model: "S1", SerialNumber: "OTHER-1", MACAddresses: []string{"02:aa:00:00:00:01"}})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := svc.CreateThing(ctx, "test", &store.Thing{Manufacturer: "Acme", Model: "S1", SerialNumber: "SN-2", MACAddresses: []string{"02:aa:00:00:00:02"}})
	if err != nil {
		t.Fatal(err)
	}
	file := "serialNumber,mac,manufacturer,model,thingType\n" +
		"SN-1,02:aa:00:00:00:01,Acme,S1,\n" + // line 2: MAC of OTHER-1
		"SN-2,02:aa:00:00:00:99,Acme,S1,\n" + // line 3: serial registered with another MAC
		"SN-2,02:aa:00:00:00:02,Acme,S1,\n" + // line 4: exactly what is stored: skipped
		"SN-2,02:aa:00:00:00:03,Acme,S2,\n" + // line 5: same serial, other model: created
		"SN-6,02:aa:00:00:00:06,Acme,S1,\n" + // line 6: created
		"SN-7,02:aa:00:00:00:06,Acme,S1,\n" + // line 7: MAC of line 6, same batch
		"SN-6,02:aa:00:00:00:06,Acme,S1,\n" + // line 8: identical duplicate of line 6: skipped
		"SN-9,,Acme,S1,fridge\n" // line 9: rejected by the identity service
	sum, err := Import(ctx, svc, strings.NewReader(file), Options{Format: CSV})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 2 || sum.Skipped != 2 || sum.Rejected != 4 {
		t.Fatalf("summary %+v, rejects %q", sum, rejectTexts(sum.Rejects))
	}
	want := []string{
		// Rejects are reported in batch order: service errors first, then conflicts.
		`line 9: thingType: "fridge" is not one of device, service, gateway`,
		fmt.Sprintf(`line 2: macAddresses: 02:aa:00:00:00:01 is already used by thing %s (manufacturer "Acme" model "S1" serial number "OTHER-1")`, other.ID),
		fmt.Sprintf(`line 3: serialNumber: "SN-2" is already registered for manufacturer "Acme" model "S1" as thing %s with MAC addresses [02:aa:00:00:00:02]; this row has [02:aa:00:00:00:99]`, mine.ID),
	}
	got := rejectTexts(sum.Rejects)
	for _, w := range want {
		if !contains(got, w) {
			t.Errorf("missing reject %q in\n%s", w, strings.Join(got, "\n"))
		}
	}
	if !containsPrefix(got, `line 7: macAddresses: 02:aa:00:00:00:06 is already used by thing `) {
		t.Errorf("no reject for line 7 in\n%s", strings.Join(got, "\n"))
	}
	if n := total(t, svc, nil); n != 4 {
		t.Errorf("%d things stored, want 4", n)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsPrefix(list []string, p string) bool {
	for _, x := range list {
		if strings.HasPrefix(x, p) {
			return true
		}
	}
	return false
}

func TestImportCancelThenResume(t *testing.T) {
	svc := newService(t)
	file := devices(1200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel while the first batch is on its way: it must still be committed whole.
	opts := Options{Format: CSV, Manufacturer: "Acme", Model: "S1", BatchSize: 500}
	sum, err := Import(ctx, cancelling{svc, cancel}, strings.NewReader(file), opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if sum.Created != 500 || sum.LastLine != 501 || sum.Rows != 500 {
		t.Fatalf("summary %+v", sum)
	}
	if n := total(t, svc, nil); n != 500 {
		t.Fatalf("%d things stored, want the first batch of 500", n)
	}
	sum, err = Import(context.Background(), svc, strings.NewReader(file), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 700 || sum.Skipped != 500 || sum.Rejected != 0 {
		t.Fatalf("resume summary %+v", sum)
	}
}

// cancelling cancels the import's context as soon as the first batch is handed over.
type cancelling struct {
	*identity.Service
	cancel context.CancelFunc
}

func (c cancelling) CreateThings(ctx context.Context, actor string, things []*store.Thing) ([]error, error) {
	c.cancel()
	return c.Service.CreateThings(ctx, actor, things)
}

func TestImportJSONLines(t *testing.T) {
	svc := newService(t)
	file := `{"serialNumber":"J-1","macAddresses":["02:bb:00:00:00:01"],"attributes":{"slot":7,"ok":true}}` + "\n" +
		`{"serialNumber":"J-2","macAddresses":"02:bb:00:00:00:02","thingType":"gateway"}` + "\n" +
		`{"serialNumber":"J-3","colour":"red"}` + "\n"
	sum, err := Import(context.Background(), svc, strings.NewReader(file), Options{Format: JSONLines, Manufacturer: "Acme", Model: "J"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 2 || sum.Rejected != 1 || !strings.HasPrefix(sum.Rejects[0].Error(), "line 3: colour: unknown field") {
		t.Fatalf("summary %+v, rejects %q", sum, rejectTexts(sum.Rejects))
	}
	things, _, err := svc.ListThings(context.Background(), store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: "J-1"}, Limit: 1})
	if err != nil || len(things) != 1 {
		t.Fatalf("J-1: %v %v", things, err)
	}
	if v := fmt.Sprint(things[0].Attributes["slot"]); v != "7" {
		t.Errorf("attribute slot = %v, want 7", v)
	}
}

func TestWriteRejects(t *testing.T) {
	svc := newService(t)
	var b strings.Builder
	b.WriteString("serial,mac\n")
	for i := range 250 {
		fmt.Fprintf(&b, "SN-%d,not-a-mac-%d\n", i, i)
	}
	sum, err := Import(context.Background(), svc, strings.NewReader(b.String()), Options{Format: CSV, KeepRejects: true, MaxRejects: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sum.Close()
	if sum.Rejected != 250 || len(sum.Rejects) != 10 {
		t.Fatalf("%d rejected, %d kept; want 250 and 10", sum.Rejected, len(sum.Rejects))
	}
	var out bytes.Buffer
	if err := sum.WriteRejects(&out); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 251 || strings.Join(recs[0], ",") != "line,reason" {
		t.Fatalf("%d records, header %q", len(recs), recs[0])
	}
	if got, want := strings.Join(recs[250], "|"), `251|mac: "not-a-mac-249" is not a MAC address (want 6 or 8 hex octets such as aa:bb:cc:dd:ee:ff)`; got != want {
		t.Errorf("last reject %q, want %q", got, want)
	}

	sum2, err := Import(context.Background(), svc, strings.NewReader("serial\nSN-1\n"), Options{Format: CSV})
	if err != nil {
		t.Fatal(err)
	}
	if err := sum2.WriteRejects(&out); err == nil {
		t.Error("WriteRejects without KeepRejects: no error")
	}
}
