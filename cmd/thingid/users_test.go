package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// served is `thingid serve` running on a data directory in this process,
// while the test runs the CLI commands on the same directory.
type served struct {
	t    *testing.T
	p    *server.Platform
	base string
	ca   *x509.CertPool
}

func serveHome(t *testing.T, home string) *served {
	t.Helper()
	cfg := config.Default()
	cfg.Home = home
	cfg.MQTT.TLS.Address = "127.0.0.1:0"
	cfg.Gateway.Address = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := server.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, slog.New(slog.DiscardHandler), io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		p.Close()
	})
	s := &served{t: t, p: p, base: "https://" + ln.Addr().String(), ca: x509.NewCertPool()}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(home, "pki", "ca.crt")); err == nil && s.ca.AppendCertsFromPEM(b) {
			if resp, err := s.client().Get(s.base + "/healthz"); err == nil {
				resp.Body.Close()
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not answer /healthz")
		}
	}
}

// client is a browser of the server: it trusts the platform CA and keeps cookies.
func (s *served) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca, ServerName: "localhost"}}}
}

func (s *served) do(c *http.Client, method, path, body string, auth func(*http.Request)) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// signIn signs user in over the JSON API, returning the browser with its
// session cookie.
func (s *served) signIn(user, pw string) (*http.Client, string) {
	s.t.Helper()
	c := s.client()
	code, body := s.do(c, "POST", "/api/v1/signin", `{"userName":"`+user+`","password":"`+pw+`"}`, nil)
	if code != 200 {
		s.t.Fatalf("sign-in of %s: %d %s", user, code, body)
	}
	return c, body
}

var idRE = regexp.MustCompile(`\(id (\S+)\)`)

func createUser(t *testing.T, home, name string) (id, pw string) {
	t.Helper()
	out, err := run(t, home, newUsers, "create", name, "--email", name+"@example.com")
	m, pwm := idRE.FindStringSubmatch(out), regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)
	if err != nil || m == nil || pwm == nil {
		t.Fatalf("users create %s: %v\n%s", name, err, out)
	}
	return m[1], pwm[1]
}

func TestUsersCommands(t *testing.T) {
	home := t.TempDir()
	aliceID, _ := createUser(t, home, "alice")
	bobID, _ := createUser(t, home, "bob")

	out, err := run(t, home, newUsers, "list")
	if err != nil || !strings.Contains(out, aliceID) || !strings.Contains(out, "alice@example.com") || !strings.Contains(out, "bob") || !strings.Contains(out, "2 of 2 shown") {
		t.Fatalf("users list: %v\n%s", err, out)
	}
	if out, err := run(t, home, newUsers, "list", "--status", "disabled"); err != nil || strings.Contains(out, "alice") {
		t.Fatalf("users list --status disabled: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"list", "--status", "gone"}, {"list", "--limit", "0"}} {
		if _, err := run(t, home, newUsers, args...); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("%v: %v", args, err)
		}
	}

	for _, arg := range []string{"alice", aliceID, "ALICE"} {
		out, err := run(t, home, newUsers, "get", arg)
		var v map[string]any
		if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["id"] != aliceID || v["hasPassword"] != true || v["status"] != "active" ||
			strings.Contains(out, "argon2") || strings.Contains(strings.ToLower(out), "passwordhash") {
			t.Fatalf("users get %s: %v\n%s", arg, err, out)
		}
	}
	if _, err := run(t, home, newUsers, "get", "carol"); err == nil || !strings.Contains(err.Error(), "`thingid users list` shows who exists") {
		t.Fatalf("unknown user: %v", err)
	}

	out, err = run(t, home, newUsers, "disable", "alice")
	if err != nil || !strings.Contains(out, "disabled user alice") {
		t.Fatalf("disable: %v %s", err, out)
	}
	if out, err := run(t, home, newUsers, "disable", aliceID); err != nil || !strings.Contains(out, "is disabled already") {
		t.Fatalf("disable twice: %v %s", err, out)
	}
	if out, err := run(t, home, newUsers, "enable", "alice"); err != nil || !strings.Contains(out, "enabled user alice") {
		t.Fatalf("enable: %v %s", err, out)
	}

	// A self-registered user may take another user's ID as name: the
	// command refuses to guess which one is meant.
	impostorID, _ := createUser(t, home, bobID)
	if _, err := run(t, home, newUsers, "disable", bobID); err == nil || !strings.Contains(err.Error(), "--by id or --by name") {
		t.Fatalf("ambiguous USER: %v", err)
	}
	if out, err := run(t, home, newUsers, "disable", bobID, "--by", "id"); err != nil || !strings.Contains(out, "disabled user bob ") {
		t.Fatalf("--by id: %v %s", err, out)
	}
	if out, err := run(t, home, newUsers, "delete", bobID, "--by", "name"); err != nil || !strings.Contains(out, "(id "+impostorID+")") {
		t.Fatalf("--by name: %v %s", err, out)
	}
	if _, err := run(t, home, newUsers, "get", "bob", "--by", "id"); err == nil || !strings.Contains(err.Error(), "no user has the ID") {
		t.Fatalf("--by id with a name: %v", err)
	}
	if _, err := run(t, home, newUsers, "get", "bob", "--by", "nickname"); err == nil || !strings.Contains(err.Error(), "want id or name") {
		t.Fatalf("--by nickname: %v", err)
	}

	if out, err := run(t, home, newUsers, "delete", "alice"); err != nil || !strings.Contains(out, "deleted user alice") {
		t.Fatalf("delete: %v %s", err, out)
	}
	if _, err := run(t, home, newUsers, "delete", "alice"); err == nil || !strings.Contains(err.Error(), "thingid users list") {
		t.Fatalf("delete twice: %v", err)
	}

	// Every change is in the audit log as the CLI's.
	out, err = run(t, home, newAudit, "--actor", "cli", "--action", "user.*", "--limit", "0")
	for _, want := range []string{"user.create", "user.disable", "user.enable", "user.delete"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("audit lacks %s: %v\n%s", want, err, out)
		}
	}
}

// The CLI changes users and tokens as the APIs do: a running server refuses
// a disabled user's session and admin token, a reset password's old
// sessions, and a revoked token, at the next request.
func TestUserAndTokenCommandsReachTheServer(t *testing.T) {
	home := t.TempDir()
	s := serveHome(t, home)
	ctx := context.Background()
	_, alicePW := createUser(t, home, "alice")
	rootID, rootPW := createUser(t, home, "root")
	groups, _, err := s.p.Identity.ListGroups(ctx, store.Query{Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: authn.AdminGroup}, Limit: 1})
	if err != nil || len(groups) != 1 {
		t.Fatalf("administrators: %v %v", groups, err)
	}
	if _, err := s.p.Identity.UpdateGroup(ctx, "test", groups[0].ID, 0, func(g *store.Group) error {
		g.Members = append(g.Members, store.Ref{Kind: store.KindUser, ID: rootID})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The first administrator still has the bootstrap's one-time password:
	// a token for it would be refused at every use, so none is minted.
	if out, err := run(t, home, newAdmin, "token", "--name", "too-early"); err == nil || !strings.Contains(err.Error(), "one-time password") || strings.Contains(out, "tid_adm_") {
		t.Errorf("a token was minted for an administrator with a one-time password: %v\n%s", err, out)
	}
	token := func(name string) (tok, id string) {
		t.Helper()
		out, err := run(t, home, newAdmin, "token", "--user", "root", "--name", name)
		m := regexp.MustCompile(`(?m)^(tid_adm_\S+)\n.*\(id (\S+)\)`).FindStringSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("admin token: %v\n%s", err, out)
		}
		return m[1], m[2]
	}
	laptop, laptopID := token("laptop")
	ci, _ := token("ci")
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	const scim = "/scim/v2/Users?count=1"
	if code, body := s.do(s.client(), "GET", scim, "", bearer(laptop)); code != 200 {
		t.Fatalf("admin token: %d %s", code, body)
	}

	out, err := run(t, home, newAdmin, "token", "list")
	if err != nil || !strings.Contains(out, laptopID) || !strings.Contains(out, "laptop") || !strings.Contains(out, "ci") || !strings.Contains(out, "root") || strings.Contains(out, "tid_adm_") {
		t.Fatalf("admin token list: %v\n%s", err, out)
	}
	if out, err := run(t, home, newAdmin, "token", "revoke", laptopID); err != nil || !strings.Contains(out, "revoked admin API token "+laptopID) {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if code, _ := s.do(s.client(), "GET", scim, "", bearer(laptop)); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	if _, err := run(t, home, newAdmin, "token", "revoke", laptopID); err == nil || !strings.Contains(err.Error(), "`thingid admin token list` shows them") {
		t.Fatalf("revoke twice: %v", err)
	}
	if out, err := run(t, home, newAdmin, "token", "list", "--user", "root"); err != nil || strings.Contains(out, laptopID) || !strings.Contains(out, "ci") {
		t.Fatalf("list after revoke: %v\n%s", err, out)
	}
	if _, err := run(t, home, newAdmin, "token", "lst"); err == nil || !strings.Contains(err.Error(), `unknown command "lst"`) {
		t.Fatalf("admin token lst: %v", err)
	}

	// Disabling ends the session and the admin token at the next request.
	browser, _ := s.signIn("alice", alicePW)
	if code, _ := s.do(browser, "GET", "/api/v1/sessions", "", nil); code != 200 {
		t.Fatalf("alice's session: %d", code)
	}
	for _, u := range []string{"alice", "root"} {
		if _, err := run(t, home, newUsers, "disable", u); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := s.do(browser, "GET", "/api/v1/sessions", "", nil); code != 401 {
		t.Fatalf("a disabled user's session: %d", code)
	}
	if code, _ := s.do(s.client(), "GET", scim, "", bearer(ci)); code != 401 {
		t.Fatalf("a disabled administrator's token: %d", code)
	}
	if _, err := run(t, home, newUsers, "enable", "root"); err != nil {
		t.Fatal(err)
	}
	if code, _ := s.do(s.client(), "GET", scim, "", bearer(ci)); code != 200 {
		t.Fatalf("the token of an administrator enabled again: %d", code)
	}

	// A reset password ends every session; the one-time password signs in
	// only to change it.
	browser, _ = s.signIn("root", rootPW)
	out, err = run(t, home, newUsers, "reset-password", "root")
	m := regexp.MustCompile(`one-time password: (\S+)`).FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(out, "ended the user's sessions") {
		t.Fatalf("reset-password: %v\n%s", err, out)
	}
	if code, _ := s.do(browser, "GET", "/api/v1/sessions", "", nil); code != 401 {
		t.Fatalf("a session from before the reset: %d", code)
	}
	if _, body := s.signIn("root", m[1]); !strings.Contains(body, `"mustChangePassword":true`) {
		t.Fatalf("sign-in with the one-time password: %s", body)
	}
	if code, body := s.do(s.client(), "GET", scim, "", func(r *http.Request) { r.SetBasicAuth("root", rootPW) }); code != 401 {
		t.Fatalf("the old password after a reset: %d %s", code, body)
	}
	if _, err := run(t, home, newUsers, "reset-password", "nobody"); err == nil || !strings.Contains(err.Error(), "thingid users list") {
		t.Fatalf("reset of an unknown user: %v", err)
	}
}

func TestDevicesEnableDelete(t *testing.T) {
	home := t.TempDir()
	p := openHome(t, home)
	th, err := p.Identity.CreateThing(context.Background(), "test", &store.Thing{SerialNumber: "SN-CLI-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"enable", th.ID}, "is active already"},
		{[]string{"disable", th.ID}, "disabled " + th.ID + " (serial SN-CLI-1)"},
		{[]string{"disable", th.ID}, "is disabled already"},
		{[]string{"enable", th.ID}, "enabled " + th.ID},
		{[]string{"delete", th.ID}, "deleted " + th.ID + " (serial SN-CLI-1)"},
	} {
		if out, err := run(t, home, newDevices, c.args...); err != nil || !strings.Contains(out, c.want) {
			t.Fatalf("%v: %v %s, want %q", c.args, err, out, c.want)
		}
	}
	for _, verb := range []string{"delete", "enable", "disable"} {
		if _, err := run(t, home, newDevices, verb, th.ID); err == nil || !strings.Contains(err.Error(), "`thingid devices list` shows what does") {
			t.Errorf("%s of a deleted thing: %v", verb, err)
		}
	}
	out, err := run(t, home, newAudit, "--subject", th.ID, "--limit", "0")
	if err != nil || strings.Count(out, "thing.disable") != 1 || strings.Count(out, "thing.enable") != 1 || strings.Count(out, "thing.delete") != 1 {
		t.Fatalf("audit of the thing: %v\n%s", err, out)
	}
}
