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

// BenchmarkStanding reads what a first MQTT CONNECT stands on: the grant
// and the thing in one statement (Standing), against the two reads it
// replaced (GetGrant, GetThing).
func BenchmarkStanding(b *testing.B, s store.Store) {
	th := &store.Thing{Type: store.ThingDevice, Model: "M", Status: store.StatusActive}
	if err := s.CreateThing(b.Context(), th); err != nil {
		b.Fatal(err)
	}
	g := &store.Grant{ClientID: "c", ThingID: th.ID}
	if err := s.CreateGrant(b.Context(), g); err != nil {
		b.Fatal(err)
	}
	b.Run("one-statement", func(b *testing.B) {
		for b.Loop() {
			if st, err := s.Standing(b.Context(), store.StandingKeys{Grant: g.ID, Thing: th.ID}); err != nil || !st.Thing.Found {
				b.Fatal(st, err)
			}
		}
	})
	b.Run("two-reads", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.GetGrant(b.Context(), g.ID); err != nil {
				b.Fatal(err)
			}
			if _, err := s.GetThing(b.Context(), th.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}
