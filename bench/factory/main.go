// Command factory measures `thingid factory issue`: N devices with keys and
// certificates into a fresh SQLite store and output directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/thingid/thingid/internal/factory"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store/sqlite"
)

func main() {
	n := flag.Int("n", 100000, "devices")
	dir := flag.String("dir", "", "working directory (default: a temporary one, removed)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile")
	flag.Parse()
	if *dir == "" {
		d, err := os.MkdirTemp("", "factory-bench")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	st, err := sqlite.Open(filepath.Join(*dir, "thingid.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	key, err := secrets.LoadOrCreate(*dir, "")
	if err != nil {
		log.Fatal(err)
	}
	root, err := pki.LoadOrCreateCA(*dir, key)
	if err != nil {
		log.Fatal(err)
	}
	ca, err := root.DeviceCA(*dir, key)
	if err != nil {
		log.Fatal(err)
	}
	if *cpuprofile != "" {
		f, _ := os.Create(*cpuprofile)
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	sum, err := factory.Issue(context.Background(), identity.New(st, nil, password.Policy{}), ca,
		factory.Options{Model: "SPK", Manufacturer: "Acme", Count: *n, Out: filepath.Join(*dir, "out"), Actor: "bench"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d devices with certificates in %s (%.0f devices/s), %d failed\n",
		sum.Issued, sum.Elapsed.Round(1e7), float64(sum.Issued)/sum.Elapsed.Seconds(), len(sum.Failed))
}
