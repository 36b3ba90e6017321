// Package factory issues device identities in batches on the production line:
// things through the identity service, keys and certificates through the
// device CA of internal/pki, and a directory of per-device files with a manifest.
// Each run is recorded as a factory batch, with its things, in the
// transactions that store them. It never writes to the store except through
// identity, and never holds CA keys.
package factory

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/thingid/thingid/internal/atomicfile"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
)

// Things is what the factory needs from identity.Service.
type Things interface {
	// CreateBatchThings stores things as CreateThings does, in batch b,
	// which it records with the first of them.
	CreateBatchThings(ctx context.Context, actor string, b *store.FactoryBatch, things []*store.Thing) ([]error, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	GetFactoryBatch(ctx context.Context, id string) (*store.FactoryBatch, error)
	SetThingPSKs(ctx context.Context, actor string, keys []*store.ThingPSK) error
}

// Options of a batch.
type Options struct {
	Model        string // required
	Manufacturer string
	// Count devices, serials <Model>-<index zero-padded to at least 6 digits>,
	// indexes 1..Count. With CSRDir, Count is optional and must equal the number
	// of CSR files when given.
	Count int
	// Out receives DIR/<serial>/device.pem (certificate + issuing CA),
	// DIR/<serial>/device.key (PKCS#8, 0600; not with CSRDir), DIR/manifest.csv
	// and DIR/batches.csv (the factory batch of each model made there).
	Out string
	// CSRDir, when set, holds one PKCS#10 request per device named
	// <serial>.csr or <serial>.pem: the file name is the serial number (the
	// factory controls file names; a CSR subject is whatever the device put in).
	// A CSR whose subject carries a different serialNumber is refused.
	CSRDir string
	// PSK gives every device of the run a DTLS pre-shared key too (the CoAP
	// gateway's smallest devices): DIR/<serial>/psk.identity and
	// DIR/<serial>/psk.key (0600) are the only place the key is shown; the
	// store keeps it sealed with MasterKey.
	PSK       bool
	MasterKey secrets.Key
	// Lifetime of the certificates; 0 is pki.DefaultDeviceLifetime.
	Lifetime time.Duration
	// Actor is recorded in the audit log.
	Actor string
	// BatchSize things per CreateThings transaction; 0 is 1000.
	BatchSize int
	// Workers generating keys and writing files; 0 is 64 × GOMAXPROCS: the
	// run waits on fsyncs far more than it signs, and concurrent fsyncs share
	// journal commits (measured: 4 workers gave 270 devices/s, see
	// docs/performance.md).
	Workers int
	// Progress, when set, is called after every batch with devices done
	// (including those done by an earlier run) and the total.
	Progress func(done, total int)
}

// Summary of a run.
type Summary struct {
	// Batch is the ID of the factory batch (the same for every run of one
	// model into one Out).
	Batch string
	Total int
	// Issued in this run; Skipped were in the manifest already; Recovered had
	// been stored by an interrupted run that did not get to write their
	// manifest line.
	Issued, Skipped, Recovered int
	// Failed devices with the reason; nothing of theirs is stored or kept.
	Failed  []error
	Elapsed time.Duration
}

// ignoreInGit writes a .gitignore that ignores everything in dir, unless
// dir has one: a batch written inside a checkout keeps its private keys out
// of the repository unless someone decides otherwise.
func ignoreInGit(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, ".gitignore"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	_, err = f.WriteString("# Written by thingid factory issue: device keys must not reach a repository.\n*\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ManifestFile is the name of the manifest in Options.Out.
const ManifestFile = "manifest.csv"

var manifestHeader = []string{"thing_id", "serial", "mac", "cert_sha256"}

// maxConflictRetries: a conflicting row gets a fresh random MAC this many
// times; a conflict that survives it is a serial number already taken.
const maxConflictRetries = 3

type device struct {
	serial string
	csr    []byte // CSR mode
	thing  *store.Thing
	fp     string
	psk    *store.ThingPSK // sealed, with Options.PSK
	err    error
	// recovered: already stored by an interrupted run, files on disk are its.
	recovered bool
}

// Issue runs the batch described by opt, resuming from the manifest in
// opt.Out. It returns an error when the run could not finish (nothing is lost:
// run it again); devices refused one by one are in Summary.Failed.
func Issue(ctx context.Context, things Things, ca *pki.DeviceCA, opt Options) (Summary, error) {
	start := time.Now()
	var sum Summary
	if strings.TrimSpace(opt.Model) == "" {
		return sum, errors.New("model is required")
	}
	if opt.Out == "" {
		return sum, errors.New("output directory is required")
	}
	if opt.CSRDir == "" && opt.Count <= 0 {
		return sum, fmt.Errorf("count must be at least 1 (got %d)", opt.Count)
	}
	if opt.Count < 0 {
		return sum, fmt.Errorf("count must not be negative (got %d)", opt.Count)
	}
	if opt.PSK && opt.MasterKey == (secrets.Key{}) {
		return sum, errors.New("pre-shared keys need the master key to seal them")
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 1000
	}
	if opt.Workers <= 0 {
		opt.Workers = 64 * runtime.GOMAXPROCS(0)
	}
	devs, err := plan(opt)
	if err != nil {
		return sum, err
	}
	sum.Total = len(devs)
	if err := os.MkdirAll(opt.Out, 0o700); err != nil {
		return sum, fmt.Errorf("output directory: %w", err)
	}
	if err := ignoreInGit(opt.Out); err != nil {
		return sum, err
	}
	batch, err := openBatch(ctx, things, ca, opt, devs)
	if err != nil {
		return sum, err
	}
	sum.Batch = batch.ID
	m, done, err := openManifest(filepath.Join(opt.Out, ManifestFile))
	if err != nil {
		return sum, err
	}
	defer m.Close()
	pending := devs[:0]
	for _, d := range devs {
		if done[d.serial] {
			sum.Skipped++
		} else {
			pending = append(pending, d)
		}
	}
	if opt.Progress != nil {
		opt.Progress(sum.Skipped, sum.Total)
	}
	for i := 0; i < len(pending); i += opt.BatchSize {
		if err := ctx.Err(); err != nil {
			sum.Elapsed = time.Since(start)
			return sum, err
		}
		chunk := pending[i:min(i+opt.BatchSize, len(pending))]
		if err := runBatch(ctx, things, ca, opt, batch, chunk, m, &sum); err != nil {
			sum.Elapsed = time.Since(start)
			return sum, err
		}
		if opt.Progress != nil {
			opt.Progress(sum.Skipped+sum.Issued+sum.Recovered+len(sum.Failed), sum.Total)
		}
	}
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// plan lists the devices of the run in order.
func plan(opt Options) ([]*device, error) {
	if opt.CSRDir == "" {
		width := max(6, len(fmt.Sprint(opt.Count)))
		devs := make([]*device, opt.Count)
		for i := range devs {
			devs[i] = &device{serial: fmt.Sprintf("%s-%0*d", opt.Model, width, i+1)}
		}
		if err := checkSerial(devs[0].serial); err != nil {
			return nil, fmt.Errorf("model %q cannot start a serial number: %w", opt.Model, err)
		}
		return devs, nil
	}
	entries, err := os.ReadDir(opt.CSRDir)
	if err != nil {
		return nil, fmt.Errorf("CSR directory: %w", err)
	}
	var devs []*device
	seen := map[string]string{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".csr" && ext != ".pem") {
			continue
		}
		serial := strings.TrimSuffix(e.Name(), ext)
		if err := checkSerial(serial); err != nil {
			return nil, fmt.Errorf("CSR file %s: the file name is the serial number: %w", e.Name(), err)
		}
		if prev, ok := seen[serial]; ok {
			return nil, fmt.Errorf("CSR files %s and %s name the same serial number", prev, e.Name())
		}
		seen[serial] = e.Name()
		b, err := os.ReadFile(filepath.Join(opt.CSRDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("CSR file: %w", err)
		}
		devs = append(devs, &device{serial: serial, csr: b})
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("CSR directory %s holds no <serial>.csr or <serial>.pem file", opt.CSRDir)
	}
	if opt.Count > 0 && opt.Count != len(devs) {
		return nil, fmt.Errorf("count is %d but %s holds %d CSR files", opt.Count, opt.CSRDir, len(devs))
	}
	return devs, nil
}

// checkSerial: a serial is a directory name under Out and an X.520
// PrintableString, so letters, digits, '-', '.', '_' is not PrintableString.
func checkSerial(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("serial number %q must be 1 to 64 characters", s)
	}
	for i, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || (r == '.' && i > 0)) {
			return fmt.Errorf("serial number %q may hold only letters, digits, '-' and '.' (not first)", s)
		}
	}
	return nil
}

// runBatch issues one batch: files first (fsynced), then one CreateThings with
// the certificate references, then the manifest lines (fsynced). A crash
// between any two steps is repaired by the next run: files without a stored
// thing are replaced, a stored thing without a manifest line is recovered.
func runBatch(ctx context.Context, things Things, ca *pki.DeviceCA, opt Options, fb *store.FactoryBatch, batch []*device, m *manifest, sum *Summary) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *device)
	var wg sync.WaitGroup
	var fatalMu sync.Mutex
	var fatal error
	for range min(opt.Workers, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if err := prepare(ctx, things, ca, opt, d); err != nil {
					fatalMu.Lock()
					if fatal == nil {
						fatal = err
					}
					fatalMu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for _, d := range batch {
		select {
		case work <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The new <serial> directories are durable before the batch is committed.
	if err := atomicfile.SyncDir(opt.Out); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}

	var create []*device
	for _, d := range batch {
		if d.err == nil && !d.recovered {
			create = append(create, d)
		}
	}
	for attempt := 0; len(create) > 0; attempt++ {
		ts := make([]*store.Thing, len(create))
		for i, d := range create {
			ts[i] = d.thing
		}
		errs, err := things.CreateBatchThings(ctx, opt.Actor, fb, ts)
		if err != nil {
			return fmt.Errorf("store things: %w", err)
		}
		var retry []*device
		for i, d := range create {
			switch {
			case errs[i] == nil:
			case errors.Is(errs[i], store.ErrConflict) && attempt < maxConflictRetries:
				d.thing.MACAddresses = []string{randomMAC()}
				retry = append(retry, d)
			case errors.Is(errs[i], store.ErrConflict):
				d.err = fmt.Errorf("serial number or MAC address already taken: %w", errs[i])
			default:
				d.err = errs[i]
			}
		}
		create = retry
	}
	if opt.PSK {
		var keys []*store.ThingPSK
		for _, d := range batch {
			if d.err == nil {
				keys = append(keys, d.psk)
			}
		}
		if len(keys) > 0 {
			if err := things.SetThingPSKs(ctx, opt.Actor, keys); err != nil {
				return fmt.Errorf("store pre-shared keys: %w", err)
			}
		}
	}

	var lines bytes.Buffer
	w := csv.NewWriter(&lines)
	for _, d := range batch {
		if d.err != nil {
			sum.Failed = append(sum.Failed, fmt.Errorf("device %s: %w", d.serial, d.err))
			// Its certificate is recorded nowhere: do not leave a key behind.
			os.RemoveAll(filepath.Join(opt.Out, d.serial))
			continue
		}
		w.Write([]string{d.thing.ID, d.serial, d.thing.MACAddresses[0], d.fp})
		if d.recovered {
			sum.Recovered++
		} else {
			sum.Issued++
		}
	}
	w.Flush()
	return m.append(lines.Bytes())
}

// prepare fills d.thing with a new identity, certificate and files, or marks it
// recovered. Errors about the device go to d.err; the returned error stops the run.
func prepare(ctx context.Context, things Things, ca *pki.DeviceCA, opt Options, d *device) error {
	dir := filepath.Join(opt.Out, d.serial)
	ok, err := recoverDone(ctx, things, opt, d, dir)
	if err != nil || ok {
		return err
	}
	id := uuid.Must(uuid.NewV7()).String()
	var dc *pki.DeviceCert
	if d.csr == nil {
		dc, err = ca.IssueDevice(id, d.serial, opt.Lifetime)
	} else {
		var csr *x509CSR
		if csr, err = pki.ParseCSR(d.csr); err == nil {
			if csr.Subject.SerialNumber != "" && csr.Subject.SerialNumber != d.serial {
				err = fmt.Errorf("CSR subject serialNumber %q differs from the file name", csr.Subject.SerialNumber)
			} else {
				dc, err = ca.SignCSR(csr, id, d.serial, opt.Lifetime)
			}
		}
	}
	if err != nil {
		d.err = err
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	if opt.PSK {
		if d.psk, err = newPSK(opt.MasterKey, id, dir); err != nil {
			return err
		}
	}
	if dc.Key != nil {
		keyPEM, err := dc.KeyPEM()
		if err != nil {
			return err
		}
		if err := atomicfile.Write(filepath.Join(dir, "device.key"), keyPEM, 0o600); err != nil {
			return err
		}
	}
	// device.pem last: its presence is what a resumed run looks at.
	if err := atomicfile.Write(filepath.Join(dir, "device.pem"), dc.ChainPEM(), 0o644); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	d.fp = dc.FingerprintSHA256
	d.thing = &store.Thing{
		Meta: store.Meta{ID: id},
		// What the owner sees on the pairing page and in "my devices".
		DisplayName:  strings.TrimSpace(opt.Manufacturer + " " + opt.Model + " " + d.serial),
		Type:         store.ThingDevice,
		Manufacturer: opt.Manufacturer,
		Model:        opt.Model,
		SerialNumber: d.serial,
		MACAddresses: []string{randomMAC()},
		Certificates: []store.CertRef{store.CertRefOf(dc.Leaf)},
	}
	return nil
}

// recoverDone looks at files an interrupted run left in dir: when the thing their
// certificate names is stored with that certificate, the device is done and
// only its manifest line is missing.
func recoverDone(ctx context.Context, things Things, opt Options, d *device, dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "device.pem"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("device %s: %w", d.serial, err)
	}
	leaf, fp, err := firstCert(b)
	if err != nil {
		return false, nil // torn or foreign: replaced
	}
	id, ok := pki.ThingID(leaf)
	if !ok {
		return false, nil
	}
	t, err := things.GetThing(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // the batch never committed
	}
	if err != nil {
		return false, fmt.Errorf("device %s: %w", d.serial, err)
	}
	if t.SerialNumber != d.serial || t.Model != opt.Model || !slices.ContainsFunc(t.Certificates, func(c store.CertRef) bool { return c.FingerprintSHA256 == fp }) {
		return false, fmt.Errorf("device %s: %s/device.pem names thing %s, which is another device or holds another certificate; move %s away and run again", d.serial, d.serial, id, dir)
	}
	if opt.PSK {
		if d.psk, err = recoverPSK(opt.MasterKey, id, dir); err != nil {
			return false, fmt.Errorf("device %s: %w", d.serial, err)
		}
	}
	d.thing, d.fp, d.recovered = t, fp, true
	if len(t.MACAddresses) == 0 {
		t.MACAddresses = []string{""}
	}
	return true, nil
}

// randomMAC returns a random unicast, locally administered EUI-48 (IEEE 802
// U/L bit set, I/G bit clear): it cannot collide with a vendor-assigned address.
func randomMAC() string {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = b[0]&0xfc | 0x02
	return net.HardwareAddr(b).String()
}

// manifest is the append-only record of finished devices.
type manifest struct{ f *os.File }

// openManifest opens or creates path and returns the serials it lists. A torn
// last line (a crash in the middle of an append) is cut off: its devices are
// recovered by the run.
func openManifest(path string) (*manifest, map[string]bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("output directory is not writable: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if n := bytes.LastIndexByte(b, '\n') + 1; n < len(b) {
		b = b[:n]
		if err := f.Truncate(int64(n)); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	m := &manifest{f: f}
	done := map[string]bool{}
	if len(b) == 0 {
		var h bytes.Buffer
		w := csv.NewWriter(&h)
		w.Write(manifestHeader)
		w.Flush()
		if err := m.append(h.Bytes()); err != nil {
			f.Close()
			return nil, nil, err
		}
		return m, done, nil
	}
	r := csv.NewReader(bufio.NewReader(bytes.NewReader(b)))
	r.FieldsPerRecord = len(manifestHeader)
	rows, err := r.ReadAll()
	if err != nil || !slices.Equal(rows[0], manifestHeader) {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a factory manifest (%v); use another output directory", path, err)
	}
	for _, row := range rows[1:] {
		done[row[1]] = true
	}
	return m, done, nil
}

func (m *manifest) append(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := m.f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	if _, err := m.f.Write(b); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

func (m *manifest) Close() error { return m.f.Close() }
