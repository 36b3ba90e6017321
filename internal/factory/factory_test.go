package factory

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

type env struct {
	ids    *identity.Service
	st     store.Store
	ca     *pki.DeviceCA
	master secrets.Key
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.LoadOrCreateCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.DeviceCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	return &env{ids: identity.New(st, nil, password.Policy{}), st: st, ca: ca, master: key}
}

func readManifest(t *testing.T, out string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(out, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows[1:]
}

// checkOut verifies every manifest row against its files and its stored thing.
func checkOut(t *testing.T, e *env, out string, n int, withKey bool) {
	t.Helper()
	rows := readManifest(t, out)
	if len(rows) != n {
		t.Fatalf("manifest has %d rows, want %d", len(rows), n)
	}
	serials, macs := map[string]bool{}, map[string]bool{}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.ca.Root)
	inter.AddCert(e.ca.Cert)
	for _, r := range rows {
		id, serial, mac, fp := r[0], r[1], r[2], r[3]
		if serials[serial] || macs[mac] {
			t.Fatalf("duplicate serial or MAC in the manifest: %v", r)
		}
		serials[serial], macs[mac] = true, true
		b, err := os.ReadFile(filepath.Join(out, serial, "device.pem"))
		if err != nil {
			t.Fatal(err)
		}
		leaf, gotFP, err := firstCert(b)
		if err != nil || gotFP != fp {
			t.Fatalf("%s: fingerprint %s, manifest %s (%v)", serial, gotFP, fp, err)
		}
		if strings.Count(string(b), "BEGIN CERTIFICATE") != 2 {
			t.Errorf("%s: device.pem is not certificate + issuing CA", serial)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", serial, err)
		}
		if got, _ := pki.ThingID(leaf); got != id || leaf.Subject.SerialNumber != serial {
			t.Errorf("%s: URI SAN thing %q, manifest %q; subject %v", serial, got, id, leaf.Subject)
		}
		th, err := e.ids.GetThing(context.Background(), id)
		if err != nil {
			t.Fatalf("%s: %v", serial, err)
		}
		if th.SerialNumber != serial || len(th.MACAddresses) != 1 || th.MACAddresses[0] != mac ||
			len(th.Certificates) != 1 || th.Certificates[0].FingerprintSHA256 != fp ||
			th.Certificates[0].Subject != leaf.Subject.String() || th.Certificates[0].Issuer != leaf.Issuer.String() ||
			!th.Certificates[0].NotAfter.Equal(leaf.NotAfter) {
			t.Errorf("%s: stored thing %+v", serial, th)
		}
		if mac[1] != '2' && mac[1] != '6' && mac[1] != 'a' && mac[1] != 'e' {
			t.Errorf("%s: MAC %s is not unicast locally administered", serial, mac)
		}
		kp := filepath.Join(out, serial, "device.key")
		fi, err := os.Stat(kp)
		if !withKey {
			if err == nil {
				t.Errorf("%s: a key file in CSR mode", serial)
			}
			continue
		}
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: device.key %v %v", serial, fi, err)
		}
		kb, _ := os.ReadFile(kp)
		blk, _ := pem.Decode(kb)
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil || !k.(*ecdsa.PrivateKey).PublicKey.Equal(leaf.PublicKey) {
			t.Errorf("%s: key does not match the certificate: %v", serial, err)
		}
	}
	_, total, err := e.ids.ListThings(context.Background(), store.Query{})
	if err != nil || total != n {
		t.Errorf("store holds %d things, want %d (%v)", total, n, err)
	}
}

func TestIssue200(t *testing.T) {
	e := newEnv(t)
	out := filepath.Join(t.TempDir(), "out")
	var last int
	sum, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "SPK", Manufacturer: "Acme", Count: 200, Out: out,
		Actor: "test", BatchSize: 64, Progress: func(done, total int) { last = done }})
	if err != nil || sum.Issued != 200 || len(sum.Failed) != 0 || last != 200 {
		t.Fatalf("sum %+v progress %d err %v", sum, last, err)
	}
	checkOut(t, e, out, 200, true)
	if _, err := os.Stat(filepath.Join(out, "SPK-000200")); err != nil {
		t.Errorf("serial format: %v", err)
	}
	// Running the same batch again does nothing.
	sum, err = Issue(context.Background(), e.ids, e.ca, Options{Model: "SPK", Manufacturer: "Acme", Count: 200, Out: out})
	if err != nil || sum.Skipped != 200 || sum.Issued != 0 {
		t.Fatalf("rerun: %+v %v", sum, err)
	}
	// A bigger count adds only the new ones.
	sum, err = Issue(context.Background(), e.ids, e.ca, Options{Model: "SPK", Manufacturer: "Acme", Count: 210, Out: out})
	if err != nil || sum.Skipped != 200 || sum.Issued != 10 {
		t.Fatalf("extend: %+v %v", sum, err)
	}
	checkOut(t, e, out, 210, true)
}

// cancelling stops the run; running again finishes it without duplicates.
func TestIssueKillAndResume(t *testing.T) {
	e := newEnv(t)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	opts := Options{Model: "THERMO", Count: 300, Out: out, BatchSize: 50}
	opts.Progress = func(done, _ int) {
		if done >= 100 {
			cancel()
		}
	}
	sum, err := Issue(ctx, e.ids, e.ca, opts)
	if err == nil || sum.Issued == 0 || sum.Issued >= 300 {
		t.Fatalf("first run: %+v %v", sum, err)
	}
	opts.Progress = nil
	sum2, err := Issue(context.Background(), e.ids, e.ca, opts)
	if err != nil || sum2.Skipped != sum.Issued || sum2.Issued+sum2.Recovered != 300-sum.Issued {
		t.Fatalf("resume: %+v %v", sum2, err)
	}
	checkOut(t, e, out, 300, true)

	// Killed after a commit and before its manifest lines (and with a torn
	// line): those devices are recovered, not created twice.
	b, _ := os.ReadFile(filepath.Join(out, ManifestFile))
	lines := strings.SplitAfter(string(b), "\n")
	kept := strings.Join(lines[:151], "") + lines[151][:10]
	os.WriteFile(filepath.Join(out, ManifestFile), []byte(kept), 0o644)
	sum3, err := Issue(context.Background(), e.ids, e.ca, opts)
	if err != nil || sum3.Skipped != 150 || sum3.Recovered != 150 || sum3.Issued != 0 {
		t.Fatalf("recovery: %+v %v", sum3, err)
	}
	checkOut(t, e, out, 300, true)
}

// Files written by a batch whose transaction never committed are replaced.
func TestIssueReplacesUncommittedFiles(t *testing.T) {
	e := newEnv(t)
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "M-000001"), 0o700)
	orphan, _ := e.ca.IssueDevice("01900000-0000-7000-8000-000000000000", "M-000001", 0)
	os.WriteFile(filepath.Join(out, "M-000001", "device.pem"), orphan.ChainPEM(), 0o644)
	os.WriteFile(filepath.Join(out, "M-000002"), nil, 0o644) // not even a directory: a clear error
	_, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "M", Count: 2, Out: out})
	if err == nil {
		t.Fatal("a file in place of a device directory was accepted")
	}
	os.Remove(filepath.Join(out, "M-000002"))
	sum, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "M", Count: 2, Out: out})
	if err != nil || sum.Issued != 2 {
		t.Fatalf("%+v %v", sum, err)
	}
	checkOut(t, e, out, 2, true)
}

func writeCSR(t *testing.T, dir, name string, k crypto.Signer, subject pkix.Name) {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, k)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
}

func TestIssueFromCSRs(t *testing.T) {
	e := newEnv(t)
	csrs, out := t.TempDir(), t.TempDir()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeCSR(t, csrs, "ED-1.csr", ed, pkix.Name{})
	writeCSR(t, csrs, "RSA-1.pem", rsa2048, pkix.Name{SerialNumber: "RSA-1"})
	writeCSR(t, csrs, "P256-1.csr", p256, pkix.Name{CommonName: "whatever"})
	writeCSR(t, csrs, "WEAK-1.csr", rsa1024, pkix.Name{})
	writeCSR(t, csrs, "LIE-1.csr", p256, pkix.Name{SerialNumber: "OTHER-9"})
	os.WriteFile(filepath.Join(csrs, "README.txt"), []byte("ignored"), 0o644)
	sum, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "M", CSRDir: csrs, Out: out})
	if err != nil || sum.Total != 5 || sum.Issued != 3 || len(sum.Failed) != 2 {
		t.Fatalf("%+v %v", sum, err)
	}
	msgs := sum.Failed[0].Error() + " | " + sum.Failed[1].Error()
	if !strings.Contains(msgs, "WEAK-1") || !strings.Contains(msgs, "1024 bits") || !strings.Contains(msgs, "LIE-1") {
		t.Errorf("failures: %s", msgs)
	}
	for _, s := range []string{"WEAK-1", "LIE-1"} {
		if _, err := os.Stat(filepath.Join(out, s)); err == nil {
			t.Errorf("%s: files left for a refused device", s)
		}
	}
	checkOut(t, e, out, 3, false)
	if _, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "M", CSRDir: csrs, Out: out, Count: 7}); err == nil {
		t.Error("a count different from the CSR files was accepted")
	}
}

func TestIssueBadInput(t *testing.T) {
	e := newEnv(t)
	ro := t.TempDir()
	os.Chmod(ro, 0o500)
	t.Cleanup(func() { os.Chmod(ro, 0o700) })
	notManifest := t.TempDir()
	os.WriteFile(filepath.Join(notManifest, ManifestFile), []byte("a,b\n"), 0o644)
	cases := []struct {
		name string
		opt  Options
		want string
	}{
		{"no model", Options{Count: 1, Out: t.TempDir()}, "model"},
		{"zero count", Options{Model: "M", Out: t.TempDir()}, "count"},
		{"negative count", Options{Model: "M", Count: -5, Out: t.TempDir()}, "count"},
		{"no out", Options{Model: "M", Count: 1}, "output directory"},
		{"model unfit for a serial", Options{Model: "../x", Count: 1, Out: t.TempDir()}, "serial"},
		{"missing CSR dir", Options{Model: "M", CSRDir: filepath.Join(ro, "nope"), Out: t.TempDir()}, "CSR directory"},
		{"empty CSR dir", Options{Model: "M", CSRDir: t.TempDir(), Out: t.TempDir()}, "no <serial>.csr"},
		{"foreign manifest", Options{Model: "M", Count: 1, Out: notManifest}, "not a factory manifest"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		cases = append(cases, struct {
			name string
			opt  Options
			want string
		}{"out not writable", Options{Model: "M", Count: 1, Out: ro}, "not writable"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Issue(context.Background(), e.ids, e.ca, c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one containing %q", err, c.want)
			}
		})
	}
}

// A batch written inside a git checkout stays out of the repository: git
// sees none of its files, keys included.
func TestIssueKeepsKeysOutOfGit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is required in CI")
		}
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	if out, err := exec.Command(git, "-C", repo, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	e := newEnv(t)
	out := filepath.Join(repo, "batch-001")
	if _, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "SPK", Manufacturer: "Acme", Count: 2, Out: out, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	status, err := exec.Command(git, "-C", repo, "status", "--porcelain", "--untracked-files=all").CombinedOutput()
	if err != nil || len(status) != 0 {
		t.Fatalf("git sees the batch: %v\n%s", err, status)
	}
	// An operator's own .gitignore is kept.
	own := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(own, 0o700)
	os.WriteFile(filepath.Join(own, ".gitignore"), []byte("*.key\n"), 0o600)
	if _, err := Issue(context.Background(), e.ids, e.ca, Options{Model: "SPK2", Manufacturer: "Acme", Count: 1, Out: own, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(own, ".gitignore")); string(b) != "*.key\n" {
		t.Errorf("the operator's .gitignore was replaced: %q", b)
	}
}

// A run is recorded as a factory batch with its things, in the
// transactions that store them; resumed and extended runs of one model into
// one output directory are the same batch, another model there another one.
func TestIssueRecordsBatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	out := t.TempDir()
	opts := Options{Model: "CAM", Manufacturer: "Acme", Count: 30, Out: out, Actor: "test", BatchSize: 8, Lifetime: 1000 * time.Hour}
	sum, err := Issue(ctx, e.ids, e.ca, opts)
	if err != nil || sum.Batch == "" {
		t.Fatalf("%+v %v", sum, err)
	}
	b, err := e.st.GetFactoryBatch(ctx, sum.Batch)
	if err != nil {
		t.Fatal(err)
	}
	if b.Model != "CAM" || b.Manufacturer != "Acme" || b.Actor != "test" || b.Count != 30 || b.Issued != 30 ||
		b.FirstSerial != "CAM-000001" || b.LastSerial != "CAM-000030" || b.Validity != 1000*time.Hour ||
		b.CASubject != e.ca.Cert.Subject.String() || len(b.CAFingerprint) != 64 {
		t.Fatalf("batch %+v", b)
	}
	things, total, err := e.st.ListFactoryBatchThings(ctx, b.ID, 0, 100)
	if err != nil || total != 30 {
		t.Fatalf("batch things: %d %v", total, err)
	}
	inManifest := map[string]bool{}
	for _, row := range readManifest(t, out) {
		inManifest[row[0]] = true
	}
	for _, th := range things {
		if !inManifest[th.ID] {
			t.Errorf("thing %s of the batch is not in the manifest", th.ID)
		}
	}

	opts.Count = 35
	sum, err = Issue(ctx, e.ids, e.ca, opts)
	if err != nil || sum.Batch != b.ID || sum.Issued != 5 {
		t.Fatalf("extended: %+v %v", sum, err)
	}
	if b, _ = e.st.GetFactoryBatch(ctx, b.ID); b.Count != 35 || b.Issued != 35 || b.LastSerial != "CAM-000035" {
		t.Errorf("extended batch %+v", b)
	}
	recs, err := e.st.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: "batch", ID: b.ID}})
	if err != nil || len(recs) != 2 || recs[0].Action != "factory.batch" || recs[1].Action != "factory.batch.extend" {
		t.Errorf("audit: %+v %v", recs, err)
	}

	opts.Model, opts.Count = "LMP", 2
	sum, err = Issue(ctx, e.ids, e.ca, opts)
	if err != nil || sum.Batch == b.ID || sum.Issued != 2 {
		t.Fatalf("another model in the directory: %+v %v", sum, err)
	}
	if _, total, _ := e.st.ListFactoryBatches(ctx, 0, 10); total != 2 {
		t.Errorf("%d batches, want 2", total)
	}
	if again, err := Issue(ctx, e.ids, e.ca, opts); err != nil || again.Batch != sum.Batch || again.Skipped != 2 {
		t.Errorf("the second model again: %+v %v", again, err)
	}

	os.WriteFile(filepath.Join(out, BatchesFile), []byte("not,a\nbatch,list\n"), 0o644)
	if _, err := Issue(ctx, e.ids, e.ca, opts); err == nil || !strings.Contains(err.Error(), BatchesFile) {
		t.Errorf("a broken %s: %v", BatchesFile, err)
	}
}
