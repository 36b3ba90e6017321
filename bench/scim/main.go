// Command scim measures the SCIM API of a real thingid server over HTTPS on
// loopback: single creates per second, Bulk device creates per second and filter
// latency, on SQLite (default) or PostgreSQL (-postgres DSN). It prints one
// "name value unit" line per figure.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

const (
	deviceSchema = "urn:ietf:params:scim:schemas:core:2.0:Device"
	thingExt     = "urn:thingid:params:scim:schemas:extension:thing:2.0:Device"
	bulkSchema   = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
)

func main() {
	singles := flag.Int("singles", 2000, "devices created one request each")
	workers := flag.Int("c", 8, "concurrent clients for single creates and lookups")
	bulkSize := flag.Int("bulk", 5000, "devices per Bulk request")
	bulks := flag.Int("bulks", 10, "Bulk requests")
	lookups := flag.Int("lookups", 2000, "filter queries by serial and by MAC")
	pg := flag.String("postgres", "", "PostgreSQL DSN (default: SQLite in a temporary directory)")
	preload := flag.Int("preload", 0, "devices created through the identity service before measuring, so filters run on a large table")
	flag.Parse()
	if err := run(*preload, *singles, *workers, *bulkSize, *bulks, *lookups, *pg); err != nil {
		fmt.Fprintln(os.Stderr, "bench/scim:", err)
		os.Exit(1)
	}
}

type client struct {
	http  *http.Client
	base  string
	token string
}

func (c *client) do(method, path string, body any) (int, []byte, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func device(i int) map[string]any {
	return map[string]any{
		"schemas":     []string{deviceSchema, thingExt},
		"displayName": fmt.Sprintf("speaker %d", i),
		thingExt: map[string]any{
			"serialNumber": fmt.Sprintf("SN%09d", i), "manufacturer": "Acme", "model": "S1",
			"macAddresses": []string{mac(i)},
		},
	}
}

func mac(i int) string {
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
}

func thing(i int) *store.Thing {
	return &store.Thing{
		DisplayName: fmt.Sprintf("speaker %d", i), SerialNumber: fmt.Sprintf("SN%09d", i),
		Manufacturer: "Acme", Model: "S1", MACAddresses: []string{mac(i)},
	}
}

func run(preload, singles, workers, bulkSize, bulks, lookups int, pg string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	home, err := os.MkdirTemp("", "thingid-bench-scim")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	cfg := config.Default()
	cfg.Home = home
	backend := "sqlite"
	if pg != "" {
		cfg.Storage.Type, cfg.Storage.Postgres.DSN, backend = "postgres", pg, "postgres"
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	p, err := server.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go p.Serve(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)

	c := &client{base: "https://" + ln.Addr().String() + "/scim/v2"}
	var ca []byte
	for range 400 {
		if ca, err = os.ReadFile(filepath.Join(home, "pki", "ca.crt")); err == nil {
			if _, err = p.Identity.GetUserByName(ctx, "admin"); err == nil {
				break
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c.http = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, MaxIdleConnsPerHost: workers,
	}}
	admin, err := p.Identity.GetUserByName(ctx, "admin")
	if err != nil {
		return fmt.Errorf("server did not start: %w", err)
	}
	var hash []byte
	c.token, hash = authn.NewToken(p.TokenKey())
	if err := p.Store.CreateAPIToken(ctx, &store.APIToken{Name: "bench", Hash: hash, UserID: admin.ID}); err != nil {
		return err
	}

	if preload > 0 {
		start := time.Now()
		for i := 0; i < preload; i += 2000 {
			batch := make([]*store.Thing, 0, 2000)
			for j := i; j < min(i+2000, preload); j++ {
				batch = append(batch, thing(j))
			}
			if _, err := p.Identity.CreateThings(ctx, "bench", batch); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "preloaded %d devices in %s\n", preload, time.Since(start).Round(time.Second))
	}

	// Single creates, `workers` at a time.
	var next atomic.Int64
	next.Store(int64(preload))
	singles += preload
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= singles {
					return
				}
				if code, body, err := c.do("POST", "/Devices", device(i)); err != nil || code != 201 {
					if failed.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "create failed: %d %v %s\n", code, err, body)
					}
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("scim_single_create_%s %.0f devices/s (%d in %s, %d clients, %d failed)\n", backend, float64(singles-preload)/el.Seconds(), singles-preload, el.Round(time.Millisecond), workers, failed.Load())

	// Bulk creates.
	n := singles
	start = time.Now()
	for b := range bulks {
		ops := make([]map[string]any, bulkSize)
		for i := range ops {
			ops[i] = map[string]any{"method": "POST", "path": "/Devices", "bulkId": fmt.Sprint(i), "data": device(n)}
			n++
		}
		code, body, err := c.do("POST", "/Bulk", map[string]any{"schemas": []string{bulkSchema}, "Operations": ops})
		if err != nil || code != 200 {
			return fmt.Errorf("bulk %d: %d %v %.300s", b, code, err, body)
		}
	}
	el = time.Since(start)
	fmt.Printf("scim_bulk_create_%s %.0f devices/s (%d requests of %d in %s)\n", backend, float64(bulks*bulkSize)/el.Seconds(), bulks, bulkSize, el.Round(time.Millisecond))

	// Filter latency by serial and by MAC over what exists.
	for _, kind := range []string{"serialNumber", "macAddresses"} {
		lat := make([]time.Duration, lookups)
		for i := range lookups {
			k := (i * 7919) % n
			v := fmt.Sprintf("SN%09d", k)
			if kind == "macAddresses" {
				v = mac(k)
			}
			q := fmt.Sprintf("/Devices?filter=%s", url.QueryEscape(fmt.Sprintf(`%s eq "%s"`, kind, v)))
			t0 := time.Now()
			code, body, err := c.do("GET", q, nil)
			lat[i] = time.Since(t0)
			if err != nil || code != 200 || !bytes.Contains(body, []byte(`"totalResults":1`)) {
				return fmt.Errorf("lookup %s: %d %v %.300s", q, code, err, body)
			}
		}
		slices.Sort(lat)
		fmt.Printf("scim_filter_%s_%s_p50 %.3f ms (over %d devices)\n", kind, backend, ms(lat[len(lat)/2]), n)
		fmt.Printf("scim_filter_%s_%s_p99 %.3f ms\n", kind, backend, ms(lat[len(lat)*99/100]))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
