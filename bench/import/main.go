// Command import measures the factory path: it writes N devices as a CSV file,
// imports them with devimport into a fresh SQLite store (or PostgreSQL with
// -postgres), then times device lookups by serial number and by MAC address.
//
// Results go to stdout, one "name value unit" line per figure; progress goes to stderr.
//
//	go run ./bench/import -n 1000000
//	go run ./bench/import -n 100000 -postgres postgres://localhost/thingid_bench
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/thingid/thingid/internal/devimport"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/postgres"
	"github.com/thingid/thingid/internal/store/sqlite"
)

func main() {
	n := flag.Int("n", 1_000_000, "number of devices")
	batch := flag.Int("batch", 2000, "rows per CreateThings call")
	lookups := flag.Int("lookups", 1000, "random lookups per filter")
	rerun := flag.Bool("rerun", false, "import the file a second time and time the skip-everything run")
	dsn := flag.String("postgres", "", "PostgreSQL DSN (default: a fresh SQLite file in a temp dir)")
	flag.Parse()
	if err := run(*n, *batch, *lookups, *rerun, *dsn); err != nil {
		fmt.Fprintln(os.Stderr, "bench/import:", err)
		os.Exit(1)
	}
}

func run(n, batch, lookups int, rerun bool, dsn string) error {
	if n < 1 || n > 1<<24 {
		return fmt.Errorf("-n must be between 1 and %d (MACs are numbered in 24 bits)", 1<<24)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "thingid-bench-import-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Random per run, so runs against one PostgreSQL database do not collide.
	d := dataset{run: rand.Uint32N(1 << 16)}
	path := filepath.Join(dir, "devices.csv")
	start := time.Now()
	size, err := d.write(path, n)
	if err != nil {
		return err
	}
	report("devices", n, "rows")
	report("file_size", float64(size)/1e6, "MB")
	report("generate_elapsed", time.Since(start).Seconds(), "s")

	var st store.Store
	backend := "sqlite"
	if dsn != "" {
		backend = "postgres"
		st, err = postgres.Open(ctx, dsn)
	} else {
		st, err = sqlite.Open(filepath.Join(dir, "thingid.db"))
	}
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintln(os.Stderr, "backend", backend)
	svc := identity.New(st, nil, nil)

	sum, heap, err := importFile(ctx, svc, path, size, batch)
	if err != nil {
		return err
	}
	report("import_elapsed", sum.Elapsed.Seconds(), "s")
	report("import_rate", sum.RowsPerSecond(), "rows/s")
	report("import_created", sum.Created, "rows")
	report("import_rejected", sum.Rejected, "rows")
	report("import_heap_max", float64(heap)/1e6, "MB")
	if sum.Created != int64(n) {
		return fmt.Errorf("created %d of %d devices; first rejects: %v", sum.Created, n, sum.Rejects)
	}
	if rerun {
		sum, heap, err = importFile(ctx, svc, path, size, batch)
		if err != nil {
			return err
		}
		report("rerun_elapsed", sum.Elapsed.Seconds(), "s")
		report("rerun_rate", sum.RowsPerSecond(), "rows/s")
		report("rerun_skipped", sum.Skipped, "rows")
		report("rerun_heap_max", float64(heap)/1e6, "MB")
	}

	for _, f := range []struct {
		name  string
		field string
		value func(i int) string
	}{
		{"lookup_serial", "serialNumber", d.serial},
		{"lookup_mac", "macAddresses", d.mac},
	} {
		times := make([]time.Duration, lookups)
		for k := range times {
			i := rand.IntN(n)
			q := store.Query{Filter: store.Compare{Field: f.field, Op: store.OpEq, Value: f.value(i)}, Limit: 1}
			t0 := time.Now()
			things, _, err := svc.ListThings(ctx, q)
			times[k] = time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s %s: %w", f.field, f.value(i), err)
			}
			if len(things) != 1 || things[0].SerialNumber != d.serial(i) {
				return fmt.Errorf("%s %s: found %d things", f.field, f.value(i), len(things))
			}
		}
		slices.Sort(times)
		report(f.name+"_p50", ms(times[len(times)/2]), "ms")
		report(f.name+"_p99", ms(times[(len(times)*99+99)/100-1]), "ms")
	}
	return nil
}

// importFile imports path, drawing a progress bar by bytes on stderr and
// sampling the Go heap after every batch.
func importFile(ctx context.Context, svc devimport.Things, path string, size int64, batch int) (devimport.Summary, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return devimport.Summary{}, 0, err
	}
	defer f.Close()
	bar := progressbar.DefaultBytes(size, "import")
	var heap uint64
	var mem runtime.MemStats
	sum, err := devimport.Import(ctx, svc, f, devimport.Options{
		Format:    devimport.CSV,
		BatchSize: batch,
		Progress: func(_, bytes int64) {
			_ = bar.Set64(bytes)
			runtime.ReadMemStats(&mem)
			heap = max(heap, mem.HeapInuse)
		},
	})
	_ = bar.Finish()
	return sum, heap, err
}

// dataset names the generated devices: device i has serial BENCH-i and the
// locally administered MAC 02:rr:rr:ii:ii:ii.
type dataset struct{ run uint32 }

func (d dataset) serial(i int) string { return fmt.Sprintf("BENCH-%08d", i) }

func (d dataset) mac(i int) string {
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", d.run>>8, d.run&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
}

func (d dataset) write(path string, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "serialNumber,mac,manufacturer,model,displayName,firmwareVersion,attr.batch")
	for i := range n {
		fmt.Fprintf(w, "%s,%s,thingid-bench-%04x,Bench-1,Bench unit %d,1.0.%d,%d\n", d.serial(i), d.mac(i), d.run, i, i%7, i/10000)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(name string, value any, unit string) {
	switch v := value.(type) {
	case float64:
		fmt.Printf("%-20s %14.3f %s\n", name, v, unit)
	default:
		fmt.Printf("%-20s %14d %s\n", name, v, unit)
	}
}
