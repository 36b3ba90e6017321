package storetest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

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

// BenchmarkThingPage reads a page of one thing found by serial number, with
// its owner's name, as a directory search does: the page and the owners in
// two statements (ListThings, then Related) and in one (ListThingsWith),
// each b.N iteration 100 reads of one way, the two taking turns so that
// both see the same load. It reports the process's CPU time per read of
// each: on a shared machine the CPU is the steadier figure.
func BenchmarkThingPage(b *testing.B, s store.Store, n int) {
	ctx := b.Context()
	things := make([]*store.Thing, n)
	for i := range things {
		things[i] = newThing(fmt.Sprintf("SN%08d", i))
	}
	if _, err := s.CreateThings(ctx, things); err != nil {
		b.Fatal(err)
	}
	for i, th := range things {
		u := &store.User{UserName: fmt.Sprintf("owner-%d", i)}
		if err := s.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
		if err := s.AddRelationship(ctx, store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
			b.Fatal(err)
		}
	}
	owners := []store.RelSpec{{Kind: store.RelOwner, End: store.EndTo}}
	reads := []struct {
		unit string
		read func(q store.Query) ([]*store.Thing, []store.Related, error)
	}{
		{"two-statements-cpu-µs/op", func(q store.Query) ([]*store.Thing, []store.Related, error) {
			ths, _, err := s.ListThings(ctx, q)
			if err != nil || len(ths) == 0 {
				return ths, nil, err
			}
			// as the directory read them: past the time limit, without
			// the driver's goroutines of a read that can be interrupted
			rel, err := s.Related(context.WithoutCancel(ctx), store.KindThing, []string{ths[0].ID}, owners)
			return ths, rel, err
		}},
		{"one-statement-cpu-µs/op", func(q store.Query) ([]*store.Thing, []store.Related, error) {
			return s.ListThingsWith(ctx, q, owners)
		}},
	}
	const turn = 100
	cpu := make([]time.Duration, len(reads))
	count := make([]int, len(reads))
	for i := 0; b.Loop(); i++ {
		r := i / turn % len(reads)
		start := processCPU(b)
		for j := range turn {
			q := store.Query{Filter: store.Compare{Field: "serialNumber", Op: store.OpEq, Value: things[(i*turn+j)%n].SerialNumber}, SortBy: "id", Limit: 2, NoTotal: true}
			ths, rel, err := reads[r].read(q)
			if err != nil {
				b.Fatal(err)
			}
			if len(ths) != 1 || len(rel) != 1 {
				b.Fatalf("%d things and %d owners, want 1 and 1", len(ths), len(rel))
			}
		}
		cpu[r] += processCPU(b) - start
		count[r] += turn
	}
	for r, read := range reads {
		if count[r] > 0 {
			b.ReportMetric(float64(cpu[r].Microseconds())/float64(count[r]), read.unit)
		}
	}
}

// processCPU is the process's CPU time so far (user and system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
