// Command search measures the admin console's things search (and SCIM's
// filters, which compile to the same store query) on N things in SQLite:
// by serial number, MAC address, model, owner and status, and model with
// status, printing p50 and p99 per search and, with -explain, SQLite's
// plan of each.
//
// The things are loaded through the store's bulk path (CreateThings, a few
// thousand per transaction), a third of them owned by N/100 users. With
// -db, a database loaded by an earlier run with the same -n is reused.
//
// Results go to stdout, one "name value unit" line per figure; progress goes to stderr.
//
//	go run ./bench/search -n 1000000 -db /tmp/search.db
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/thingid/thingid/internal/console"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

func main() {
	n := flag.Int("n", 1_000_000, "number of things")
	queries := flag.Int("queries", 200, "searches per kind")
	batch := flag.Int("batch", 5000, "things per transaction while loading")
	db := flag.String("db", "", "SQLite file to load into, or to reuse when it holds -n things already (default: a temporary one)")
	explain := flag.Bool("explain", false, "print SQLite's plan of each search")
	flag.Parse()
	if err := run(*n, *queries, *batch, *db, *explain); err != nil {
		fmt.Fprintln(os.Stderr, "bench/search:", err)
		os.Exit(1)
	}
}

// explainer is what sqlstore.Store tells of its plans.
type explainer interface {
	ExplainThings(ctx context.Context, q store.Query) (count, page string, err error)
}

func run(n, queries, batch int, db string, explain bool) error {
	if n < 100 || n > 1<<24 {
		return fmt.Errorf("-n must be between 100 and %d (MACs are numbered in 24 bits)", 1<<24)
	}
	ctx := context.Background()
	if db == "" {
		dir, err := os.MkdirTemp("", "thingid-bench-search-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		db = filepath.Join(dir, "thingid.db")
	}
	st, err := sqlite.Open(db)
	if err != nil {
		return err
	}
	defer st.Close()
	d := dataset{n: n}
	_, have, err := st.ListThings(ctx, store.Query{})
	if err != nil {
		return err
	}
	switch have {
	case 0:
		start := time.Now()
		if err := d.load(ctx, st, batch); err != nil {
			return err
		}
		report("load_elapsed", time.Since(start).Seconds(), "s")
	case n:
		fmt.Fprintf(os.Stderr, "reusing the %d things of %s\n", n, db)
	default:
		return fmt.Errorf("%s holds %d things, not %d: give another -db", db, have, n)
	}
	report("things", n, "rows")
	owners, err := d.owners(ctx, st)
	if err != nil {
		return err
	}

	searches := []struct {
		name  string
		query func(i int) (store.Query, error)
	}{
		{"serial", func(i int) (store.Query, error) { return console.ThingQuery(d.serial(i), "", "", "", "", 1), nil }},
		{"mac", func(i int) (store.Query, error) { return console.ThingQuery("", d.mac(i), "", "", "", 1), nil }},
		{"model", func(i int) (store.Query, error) { return console.ThingQuery("", "", d.model(i), "", "", 1), nil }},
		// The console looks the owner's user name up first: timed with the search.
		{"owner", func(i int) (store.Query, error) {
			u, err := st.GetUserByName(ctx, d.user(i%len(owners)))
			if err != nil {
				return store.Query{}, err
			}
			return console.ThingQuery("", "", "", u.ID, "", 1), nil
		}},
		{"status_disabled", func(int) (store.Query, error) { return console.ThingQuery("", "", "", "", "disabled", 1), nil }},
		{"status_active", func(int) (store.Query, error) { return console.ThingQuery("", "", "", "", "active", 1), nil }},
		{"model_active", func(i int) (store.Query, error) { return console.ThingQuery("", "", d.model(i), "", "active", 1), nil }},
		// A deep page of a large result.
		{"model_page_100", func(i int) (store.Query, error) { return console.ThingQuery("", "", d.model(i), "", "", 100), nil }},
	}
	for _, s := range searches {
		if explain {
			q, err := s.query(0)
			if err != nil {
				return err
			}
			if ex, ok := st.(explainer); ok {
				count, page, err := ex.ExplainThings(ctx, q)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "%s: count\n%s\n%s: page\n%s\n", s.name, count, s.name, page)
			}
		}
		times := make([]time.Duration, queries)
		for k := range times {
			i := rand.IntN(n)
			t0 := time.Now()
			q, err := s.query(i)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			things, total, err := st.ListThings(ctx, q)
			times[k] = time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if total == 0 || len(things) == 0 {
				return fmt.Errorf("%s %d: nothing found", s.name, i)
			}
		}
		slices.Sort(times)
		report(s.name+"_p50", ms(times[len(times)/2]), "ms")
		report(s.name+"_p99", ms(times[(len(times)*99+99)/100-1]), "ms")
	}
	return nil
}

// dataset names the generated things: thing i has serial SN-i, MAC
// 02:00:00:ii:ii:ii, model i%20, is disabled when i/20%20 == 0 (5 %, in
// every model), and, when i%3 == 0, is owned by one of n/100 users.
type dataset struct{ n int }

func (d dataset) serial(i int) string { return fmt.Sprintf("SN-%08d", i) }
func (d dataset) mac(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}
func (d dataset) model(i int) string { return fmt.Sprintf("Model-%02d", i%20) }
func (d dataset) users() int         { return d.n / 100 }
func (d dataset) user(u int) string  { return fmt.Sprintf("owner%06d", u) }

func (d dataset) thing(i int) *store.Thing {
	status := store.StatusActive
	if i/20%20 == 0 {
		status = store.StatusDisabled
	}
	return &store.Thing{Type: store.ThingDevice, Manufacturer: "Acme", Model: d.model(i), SerialNumber: d.serial(i),
		DisplayName: "Acme " + d.model(i) + " " + d.serial(i), MACAddresses: []string{d.mac(i)}, Status: status}
}

// load stores the users, the things and the owners' relationships, each
// batch in one transaction, drawing a progress bar on stderr.
func (d dataset) load(ctx context.Context, st store.Store, batch int) error {
	users := make([]string, d.users())
	if err := st.WithTx(ctx, func(tx store.Tx) error {
		for u := range users {
			usr := &store.User{UserName: d.user(u), Status: store.StatusActive}
			if err := tx.CreateUser(ctx, usr); err != nil {
				return err
			}
			users[u] = usr.ID
		}
		return nil
	}); err != nil {
		return fmt.Errorf("users: %w", err)
	}
	bar := progressbar.Default(int64(d.n), "things")
	for start := 0; start < d.n; start += batch {
		things := make([]*store.Thing, 0, batch)
		for i := start; i < min(start+batch, d.n); i++ {
			things = append(things, d.thing(i))
		}
		err := st.WithTx(ctx, func(tx store.Tx) error {
			errs, err := tx.CreateThings(ctx, things)
			if err != nil {
				return err
			}
			for k, th := range things {
				if errs[k] != nil {
					return errs[k]
				}
				if i := start + k; i%3 == 0 {
					if err := tx.AddRelationship(ctx, store.Relationship{Kind: store.RelOwner,
						From: store.Ref{Kind: store.KindUser, ID: users[i/3%len(users)]}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("things %d-: %w", start, err)
		}
		_ = bar.Add(len(things))
	}
	return bar.Finish()
}

// owners checks that the owners are stored and returns their user names.
func (d dataset) owners(ctx context.Context, st store.Store) ([]string, error) {
	names := make([]string, d.users())
	for u := range names {
		names[u] = d.user(u)
	}
	if _, err := st.GetUserByName(ctx, names[len(names)-1]); err != nil {
		return nil, errors.Join(errors.New("the owners are not stored"), err)
	}
	return names, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func report(name string, value any, unit string) {
	switch v := value.(type) {
	case float64:
		fmt.Printf("%-22s %14.3f %s\n", name, v, unit)
	default:
		fmt.Printf("%-22s %14d %s\n", name, v, unit)
	}
}
