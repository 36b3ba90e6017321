package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the admin connection that creates and drops the test's database

	"github.com/thingid/thingid/internal/store/postgres/pgtest"
)

// needTools skips the test when a tool is missing, or fails it in CI.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

// emptyHome is a new data directory named "node" (start derives the
// administrator's password from the name: every node of the test has the same).
func emptyHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "node")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	return home
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// issueDevices issues n devices with the factory CLI into home and returns
// the batch's directory and its manifest (a header, then one row per device:
// thing id, serial number, ...).
func issueDevices(t *testing.T, env []string, home string, n int) (string, [][]string) {
	t.Helper()
	batch := filepath.Join(t.TempDir(), "batch")
	if out, errOut, err := thingid(t, env, "", "--home", home, "factory", "issue", "--model", "S1", "--manufacturer", "Acme", "--count", strconv.Itoa(n), "--out", batch); err != nil {
		t.Fatalf("factory issue: %v\n%s\n%s", err, out, errOut)
	}
	f, err := os.Open(filepath.Join(batch, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != n+1 {
		t.Fatalf("manifest: %d rows, %v", len(rows), err)
	}
	return batch, rows
}

// curlTo runs curl against a node whose data directory is home, trusting
// its platform CA; the last argument is the path.
func curlTo(t *testing.T, in *instance, home string, args ...string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(in.addr)
	args[len(args)-1] = "https://localhost:" + port + args[len(args)-1]
	return run(t, "curl", append([]string{"-sS", "--cacert", filepath.Join(home, "pki", "ca.crt")}, args...)...)
}

// callHome is the device serial of batch calling home over mutual TLS.
func callHome(t *testing.T, in *instance, home, batch, serial string) string {
	t.Helper()
	dir := filepath.Join(batch, serial)
	return curlTo(t, in, home, "--cert", filepath.Join(dir, "device.pem"), "--key", filepath.Join(dir, "device.key"), "/api/v1/things/self")
}

// signIn signs user in with password and returns the status.
func signIn(t *testing.T, in *instance, user, password string) int {
	t.Helper()
	raw, _ := json.Marshal(map[string]string{"userName": user, "password": password})
	resp, err := in.client.Post(in.url("/api/v1/signin"), "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// deploymentBlocks returns the two ```sh blocks of docs/deployment.md that
// it leaves to test (their skip reason names it): backing up, restoring.
func deploymentBlocks(t *testing.T, test string) (string, string) {
	t.Helper()
	text, err := os.ReadFile("../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseDoc(string(text))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, s := range steps {
		if strings.Contains(s.opts["reason"], test) {
			blocks = append(blocks, s.script)
		}
	}
	if len(blocks) != 2 {
		t.Fatalf("docs/deployment.md has %d blocks left to %s, want 2 (backing up, restoring)", len(blocks), test)
	}
	return blocks[0], blocks[1]
}

// stopNode ends a node as systemd does (SIGTERM) and waits for it.
func stopNode(t *testing.T, in *instance) {
	t.Helper()
	in.cmd.Process.Signal(syscall.SIGTERM)
	if err := in.cmd.Wait(); err != nil {
		t.Fatalf("the node did not stop cleanly: %v\n%s", err, in.out)
	}
}

// The backup and restore of docs/deployment.md, its blocks run as written
// (with the test's database name): pg_dump of a
// serving node's database, the database lost and created again, pg_restore,
// and a node with a fresh data directory and the same master key. The
// platform CA comes back from the database, the device's certificate still
// authenticates, a token still verifies, the user still signs in. What
// happened after the backup is gone: a user created is not there, and a
// token revoked, a device disabled, a certificate revoked are live again
// until done again from the audit trail kept outside the database.
func TestBackupRestorePostgres(t *testing.T) {
	needTools(t, "pg_dump", "pg_restore", "psql", "curl")
	dsn, dbName := pgtest.Database(t)
	key := make([]byte, 32)
	rand.Read(key)
	env := []string{"THINGID_STORAGE_TYPE=postgres", "THINGID_STORAGE_POSTGRES_DSN=" + dsn,
		"THINGID_MASTERKEY=" + base64.StdEncoding.EncodeToString(key)}

	// The restored node answers on the same address: the issuer of the
	// tokens (http.publicURL) is derived from it.
	home, addr := emptyHome(t), freeAddr(t)
	in := start(t, home, addr, env...)
	const password = "a passphrase kept across the restore"
	if out, errOut, err := thingid(t, env, password+"\n", "--home", home, "users", "create", "alice", "--password-stdin"); err != nil {
		t.Fatalf("users create: %v %s %s", err, out, errOut)
	}
	batch, rows := issueDevices(t, env, home, 2)
	// The first device is disabled after the backup, the second's
	// certificate revoked.
	thing, serial, revoked := rows[1][0], rows[1][1], rows[2]

	out, errOut, err := thingid(t, env, "", "--home", home, "clients", "create", "--name", "reader",
		"--grant-type", "client_credentials", "--scope", "telemetry:read")
	if err != nil {
		t.Fatalf("clients create: %v %s", err, errOut)
	}
	client := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out)
	if client == nil || secret == nil {
		t.Fatalf("clients create printed no credentials:\n%s", out)
	}

	// asClient calls as the OAuth client.
	asClient := func(in *instance, home string, args ...string) string {
		return curlTo(t, in, home, append([]string{"-u", client[1] + ":" + secret[1]}, args...)...)
	}
	// refusedSoon waits until the revoked device's call home is refused: the
	// CLI's revocation reaches the node as an event.
	refusedSoon := func(in *instance, home string) {
		for deadline := time.Now().Add(10 * time.Second); strings.Contains(callHome(t, in, home, batch, revoked[1]), `"thingId"`); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a revoked certificate still calls home after 10 s")
			}
		}
	}
	revokeCert := func(home string) {
		if out, errOut, err := thingid(t, env, "", "--home", home, "certs", "revoke", "--thing", revoked[0], "--reason", "keyCompromise"); err != nil || !strings.Contains(out, "revoked") {
			t.Fatalf("certs revoke: %v %s %s", err, out, errOut)
		}
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body := asClient(in, home, "--data-urlencode", "grant_type=client_credentials", "/oauth2/token")
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("client credentials token: %s", body)
	}
	active := func(in *instance, home string) string {
		return asClient(in, home, "--data-urlencode", "token="+tok.AccessToken, "/oauth2/introspect")
	}
	revoke := func(in *instance, home string) {
		asClient(in, home, "--data-urlencode", "token="+tok.AccessToken, "/oauth2/revoke")
	}
	if body := active(in, home); !strings.Contains(body, `"active":true`) {
		t.Fatalf("introspection before the backup: %s", body)
	}
	if body := callHome(t, in, home, batch, serial); !strings.Contains(body, `"thingId":"`+thing+`"`) {
		t.Fatalf("the device's certificate before the backup: %s", body)
	}

	// The audit trail kept outside the database, as docs/deployment.md
	// recommends: what to do again after a restore.
	trailFile := filepath.Join(t.TempDir(), "audit.jsonl")
	trailOut, err := os.Create(trailFile)
	if err != nil {
		t.Fatal(err)
	}
	defer trailOut.Close()
	follow := exec.Command(binary, "--home", emptyHome(t), "audit", "--follow", "--json", "--limit", "0", "--interval", "100ms")
	follow.Env, follow.Stdout = append(os.Environ(), env...), trailOut
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })

	// The backup, the node serving; then what happens after it: a user
	// created, the client's token revoked, a device disabled, another's
	// certificate revoked.
	backupBlock, restoreBlock := deploymentBlocks(t, "TestBackupRestorePostgres")
	work := t.TempDir()
	dump := filepath.Join(work, "thingid.dump")
	shell := func(script string) {
		t.Helper()
		sh := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
		sh.Dir = work
		sh.Env = append(os.Environ(), "DSN="+dsn, "ADMIN_DSN="+os.Getenv("THINGID_TEST_POSTGRES_DSN"))
		if out, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("docs/deployment.md's block:\n%s\n%v\n%s", script, err, out)
		}
	}
	shell(backupBlock)
	if list := run(t, "pg_restore", "--list", dump); !strings.Contains(list, "TABLE DATA public pki_ca_files") || !strings.Contains(list, "TABLE DATA public oauth_signing_keys") {
		t.Fatalf("the dump lacks the CAs or the signing keys:\n%s", list)
	}
	if _, errOut, err := thingid(t, env, password+"\n", "--home", home, "users", "create", "bob", "--password-stdin"); err != nil {
		t.Fatalf("users create bob: %v %s", err, errOut)
	}
	revoke(in, home)
	if body := active(in, home); !strings.Contains(body, `"active":false`) {
		t.Fatalf("introspection after the revocation: %s", body)
	}
	disable := func(home string) {
		if out, errOut, err := thingid(t, env, "", "--home", home, "devices", "disable", thing); err != nil || !strings.Contains(out, "disabled") {
			t.Fatalf("devices disable: %v %s %s", err, out, errOut)
		}
	}
	disable(home)
	if body := callHome(t, in, home, batch, serial); strings.Contains(body, `"thingId"`) {
		t.Fatalf("a disabled device called home: %s", body)
	}
	revokeCert(home)
	refusedSoon(in, home)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		trail, _ := os.ReadFile(trailFile)
		if bytes.Contains(trail, []byte(`"thing.update","subject":{"kind":"thing","id":"`+thing+`"}`)) && bytes.Contains(trail, []byte(`"cert.revoke"`)) && bytes.Contains(trail, []byte(`"grant.revoke"`)) {
			break
		}
		if time.Now().After(deadline) {
			trail, _ := os.ReadFile(trailFile)
			t.Fatalf("the audit trail kept outside the database lacks the device disabled, the certificate or the token revoked after 10 s:\n%s", trail)
		}
	}
	follow.Process.Signal(syscall.SIGTERM)
	follow.Wait()
	caBefore, err := os.ReadFile(filepath.Join(home, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// The database is lost with the node; an empty one of the same name, the restore.
	stopNode(t, in)
	shell(strings.ReplaceAll(restoreBlock, "DATABASE thingid", "DATABASE "+dbName)) // the test's own database

	// Without the master key the backup is of no use: the CAs and the
	// signing keys in it do not open.
	otherKey := make([]byte, 32)
	rand.Read(otherKey)
	wrong := append(env[:2:2], "THINGID_MASTERKEY="+base64.StdEncoding.EncodeToString(otherKey), "THINGID_MQTT_TLS_ADDRESS=127.0.0.1:0", "THINGID_GATEWAY_ADDRESS=127.0.0.1:0")
	if out, errOut, err := thingid(t, wrong, "", "--home", emptyHome(t), "serve", "--http-address", freeAddr(t)); err == nil || !strings.Contains(errOut, "every node of one database needs the same masterKey") {
		t.Fatalf("a node with another master key on the restored database: %v\n%s\n%s", err, out, errOut)
	}

	home2 := emptyHome(t)
	in2 := start(t, home2, addr, env...)
	caAfter, err := os.ReadFile(filepath.Join(home2, "pki", "ca.crt"))
	if err != nil || !bytes.Equal(caBefore, caAfter) {
		t.Fatalf("the restored node's platform CA is not the backed-up one (%v)", err)
	}
	// The device was disabled after the backup: it calls home again, until
	// it is disabled again (from the audit trail kept outside).
	if body := callHome(t, in2, home2, batch, serial); !strings.Contains(body, `"thingId":"`+thing+`"`) {
		t.Errorf("the device's certificate after the restore: %s", body)
	}
	if body := callHome(t, in2, home2, batch, revoked[1]); !strings.Contains(body, `"thingId":"`+revoked[0]+`"`) {
		t.Errorf("the certificate revoked after the backup, after the restore: %s (want accepted again, as documented)", body)
	}
	disable(home2)
	revokeCert(home2)
	refusedSoon(in2, home2)
	if body := callHome(t, in2, home2, batch, serial); strings.Contains(body, `"thingId"`) {
		t.Errorf("the device disabled again after the restore called home: %s", body)
	}
	// The revocation came after the backup: the token is live again, until
	// it expires or is revoked again (docs/deployment.md says so).
	if body := active(in2, home2); !strings.Contains(body, `"active":true`) {
		t.Errorf("the token revoked after the backup, after the restore: %s (want active again, as documented)", body)
	}
	revoke(in2, home2)
	if body := active(in2, home2); !strings.Contains(body, `"active":false`) {
		t.Errorf("revoked again after the restore: %s", body)
	}
	if code := signIn(t, in2, "alice", password); code != 200 {
		t.Errorf("alice signs in after the restore: %d", code)
	}
	if code := signIn(t, in2, "bob", password); code != 401 {
		t.Errorf("bob, created after the backup, signs in after the restore: %d, want 401", code)
	}
}

// `thingid backup` on a single SQLite node while SCIM writes commit: the
// copy, used as the data directory of a new server, has every user
// acknowledged before the backup began, the same CA, a device certificate
// that still calls home and a user who still signs in. The running server
// holds the broker's sessions file, which the backup says it left out; once
// the server is stopped, a backup has it.
func TestBackupSQLiteWhileServing(t *testing.T) {
	needTools(t, "curl", "cp")
	home, addr := emptyHome(t), freeAddr(t)
	in := start(t, home, addr)
	const password = "a passphrase kept across the restore"
	if out, errOut, err := thingid(t, nil, password+"\n", "--home", home, "users", "create", "alice", "--password-stdin"); err != nil {
		t.Fatalf("users create: %v %s %s", err, out, errOut)
	}
	batch, rows := issueDevices(t, nil, home, 1)
	serial := rows[1][1]

	var (
		mu    sync.Mutex
		acked []string
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-%05d", w, i)
				if _, ok := createUser(ctx, in, in.adminPassword(t), name); !ok {
					return
				}
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		})
	}
	for n := 0; n < 100; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n = len(acked)
		mu.Unlock()
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	backup := filepath.Join(t.TempDir(), "backup")
	out, errOut, err := thingid(t, nil, "", "--home", home, "backup", "--out", backup)
	mu.Lock()
	during := len(acked)
	mu.Unlock()
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("thingid backup: %v\n%s\n%s", err, out, errOut)
	}
	if during == before {
		t.Error("no write was acknowledged while the backup ran: it proves nothing about a serving node")
	}
	for _, want := range []string{"thingid.db: snapshot", "master.key: copied", "pki: ", "mqtt/mqtt-sessions.db: not copied: the running server holds it"} {
		if !strings.Contains(out, want) {
			t.Errorf("the backup's report lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, err := thingid(t, nil, "", "--home", home, "backup", "--out", backup); err == nil || !strings.Contains(errOut, "--out "+backup) {
		t.Errorf("a backup into an existing directory: %v %s", err, errOut)
	}
	stopNode(t, in)
	out, errOut, err = thingid(t, nil, "", "--home", home, "backup", "--out", filepath.Join(t.TempDir(), "stopped"))
	if err != nil || !strings.Contains(out, "mqtt/mqtt-sessions.db: copied") {
		t.Errorf("a backup of the stopped server: %v\n%s\n%s", err, out, errOut)
	}

	// The restore, as docs/deployment.md says: the copy is the data directory.
	home2 := filepath.Join(t.TempDir(), filepath.Base(home))
	run(t, "cp", "-a", backup, home2)
	in2 := start(t, home2, freeAddr(t))
	caBefore, _ := os.ReadFile(filepath.Join(home, "pki", "ca.crt"))
	if caAfter, err := os.ReadFile(filepath.Join(home2, "pki", "ca.crt")); err != nil || !bytes.Equal(caBefore, caAfter) {
		t.Fatalf("the restored platform CA is not the backed-up one (%v)", err)
	}
	if body := callHome(t, in2, home2, batch, serial); !strings.Contains(body, `"thingId":"`+rows[1][0]+`"`) {
		t.Errorf("the device's certificate after the restore: %s", body)
	}
	if code := signIn(t, in2, "alice", password); code != 200 {
		t.Errorf("alice signs in after the restore: %d", code)
	}
	code, list := in2.scim(t, "GET", `/Users?filter=userName%20sw%20%22w%22&count=0`, nil)
	total, _ := list["totalResults"].(float64)
	if code != 200 || int(total) < before || int(total) > len(acked) {
		t.Errorf("the restored store has %v writers' users (status %d): want at least the %d acknowledged before the backup, at most the %d acknowledged in all", list["totalResults"], code, before, len(acked))
	}
	t.Logf("users acknowledged: %d before the backup, %d when it ended, %d in all; %v in the restored store", before, during, len(acked), total)
}

// On PostgreSQL `thingid backup` refuses, naming pg_dump, and leaves no
// directory behind.
func TestBackupRefusedOnPostgres(t *testing.T) {
	env := []string{"THINGID_STORAGE_TYPE=postgres", "THINGID_STORAGE_POSTGRES_DSN=" + pgtest.DSN(t)}
	out := filepath.Join(t.TempDir(), "backup")
	_, errOut, err := thingid(t, env, "", "--home", emptyHome(t), "backup", "--out", out)
	if err == nil || !strings.Contains(errOut, "pg_dump") {
		t.Errorf("thingid backup on PostgreSQL: %v %s", err, errOut)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused backup left %s behind: %v", out, err)
	}
}
