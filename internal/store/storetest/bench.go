package storetest

import (
	"fmt"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// BenchmarkCreateThings stores b.N things with one MAC each through
// CreateThings in batches of batch, and reports rows/s.
func BenchmarkCreateThings(b *testing.B, s store.Store, batch int) {
	things := make([]*store.Thing, 0, batch)
	b.ResetTimer()
	for done := 0; done < b.N; {
		things = things[:0]
		for i := done; i < min(done+batch, b.N); i++ {
			things = append(things, &store.Thing{
				DisplayName: "Speaker", Type: store.ThingDevice, Manufacturer: "Acme", Model: "S1",
				SerialNumber: fmt.Sprintf("SN%09d", i), FirmwareVersion: "1.0.0", Status: store.StatusActive,
				MACAddresses: []string{fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))},
			})
		}
		errs, err := s.CreateThings(b.Context(), things)
		if err != nil {
			b.Fatal(err)
		}
		for i, e := range errs {
			if e != nil {
				b.Fatalf("things[%d]: %v", i, e)
			}
		}
		done += len(things)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
