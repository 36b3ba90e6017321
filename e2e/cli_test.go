package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// thingid runs the binary with args and returns its stdout, stderr and error.
func thingid(t *testing.T, env []string, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// The CLI works on the same data directory as a running server: devices imported
// from the command line are visible through SCIM at once, with a token made by the CLI.
func TestCLIImportWhileServing(t *testing.T) {
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr)

	var csv strings.Builder
	csv.WriteString("serialNumber,mac,displayName,attr.color\n")
	for i := range 500 {
		fmt.Fprintf(&csv, "SN-%05d,02:00:00:00:%02x:%02x,speaker %d,red\n", i, i>>8, i&0xff, i)
	}
	csv.WriteString("SN-BAD,not-a-mac,broken,red\n")
	csv.WriteString(",02:00:00:00:ff:ff,no serial,red\n")
	file := filepath.Join(t.TempDir(), "devices.csv")
	os.WriteFile(file, []byte(csv.String()), 0o600)

	out, errOut, err := thingid(t, nil, "", "--home", home, "devices", "import", file, "--manufacturer", "Acme", "--model", "S1")
	if err == nil {
		t.Error("import with rejected rows exited 0")
	}
	if !strings.Contains(out, "500 created") || !strings.Contains(out, "2 rejected") || !strings.Contains(out, "line 502") || !strings.Contains(out, "line 503") {
		t.Errorf("summary does not account for the rows:\n%s\n%s", out, errOut)
	}
	// Re-running resumes: nothing is created twice.
	out, _, _ = thingid(t, nil, "", "--home", home, "devices", "import", file, "--manufacturer", "Acme", "--model", "S1")
	if !strings.Contains(out, "0 created, 500 already imported") {
		t.Errorf("re-run did not skip imported rows:\n%s", out)
	}

	token, errOut, err := thingid(t, nil, "", "--home", home, "admin", "token", "--name", "e2e")
	if err != nil {
		t.Fatalf("admin token: %v %s", err, errOut)
	}
	req, _ := http.NewRequest("GET", in.url(`/scim/v2/Devices?filter=serialNumber%20sw%20%22SN-%22&count=1`), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		TotalResults int              `json:"totalResults"`
		Resources    []map[string]any `json:"Resources"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if resp.StatusCode != 200 || list.TotalResults != 500 {
		t.Fatalf("SCIM sees %d devices (status %d), want 500", list.TotalResults, resp.StatusCode)
	}
	id := list.Resources[0]["id"].(string)

	out, _, err = thingid(t, nil, "", "--home", home, "devices", "disable", id)
	if err != nil || !strings.Contains(out, "disabled "+id) {
		t.Fatalf("disable: %v %s", err, out)
	}
	out, _, err = thingid(t, nil, "", "--home", home, "devices", "get", id)
	if err != nil || !strings.Contains(out, `"Status": "disabled"`) {
		t.Errorf("get after disable: %v %s", err, out)
	}
	out, _, err = thingid(t, nil, "", "--home", home, "devices", "list", "--status", "disabled")
	if err != nil || !strings.Contains(out, id) || strings.Count(out, "\n") != 2 {
		t.Errorf("list --status disabled: %v\n%s", err, out)
	}
	if _, errOut, err := thingid(t, nil, "", "--home", home, "devices", "get", "no-such-id"); err == nil || !strings.Contains(errOut, "does not exist") {
		t.Errorf("get of a missing thing: %v %s", err, errOut)
	}
}

func TestCLIUsersAndConfig(t *testing.T) {
	home := t.TempDir()
	out, errOut, err := thingid(t, nil, "", "--home", home, "users", "create", "alice", "--email", "alice@example.com")
	if err != nil || !strings.Contains(out, "created user alice") || !strings.Contains(out, "password: ") {
		t.Fatalf("users create: %v %s %s", err, out, errOut)
	}
	_, errOut, err = thingid(t, nil, "a much better passphrase\n", "--home", home, "users", "create", "ALICE", "--password-stdin")
	if err == nil || !strings.Contains(errOut, "already taken") {
		t.Errorf("duplicate user name in other case: %v %s", err, errOut)
	}
	_, errOut, err = thingid(t, nil, "password\n", "--home", home, "users", "create", "bob", "--password-stdin")
	if err == nil || !strings.Contains(errOut, "password") {
		t.Errorf("weak password accepted: %v %s", err, errOut)
	}

	out, _, err = thingid(t, []string{"THINGID_STORAGE_TYPE=postgres", "THINGID_STORAGE_POSTGRES_DSN=postgres://u:hunter2@db/x"}, "", "config", "print")
	if err != nil || strings.Contains(out, "hunter2") || !strings.Contains(out, "******") || !strings.Contains(out, "type: postgres") {
		t.Errorf("config print: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("http:\n  adress: 127.0.0.1:1\n"), 0o600)
	_, errOut, err = thingid(t, nil, "", "--config", bad, "config", "print")
	if err == nil || !strings.Contains(errOut, "adress") {
		t.Errorf("unknown config field: %v %s", err, errOut)
	}
	_, errOut, err = thingid(t, []string{"THINGID_STORAGE_TYPE=oracle"}, "", "serve")
	if err == nil || !strings.Contains(errOut, "storage.type") {
		t.Errorf("bad storage type: %v %s", err, errOut)
	}
}
