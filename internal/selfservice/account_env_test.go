package selfservice

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

// clock is the injectable clock of the links' expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// storeRevoker stands in for the authorization server and UMA, which live
// above this package (internal/server's tests delete an account with them):
// it makes the same store changes and records what it was asked.
type storeRevoker struct {
	ids   *identity.Service
	st    store.Store
	mu    sync.Mutex
	calls []string
}

func (r *storeRevoker) record(s string) { r.mu.Lock(); r.calls = append(r.calls, s); r.mu.Unlock() }

// Unlink removes the owner relationship and revokes the user's grants for
// the thing, as oauth.Server.Unlink does.
func (r *storeRevoker) Unlink(ctx context.Context, actor, userID, thingID string) error {
	r.record("unlink " + thingID)
	if err := r.ids.RemoveRelationship(ctx, actor, store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: userID}, To: store.Ref{Kind: store.KindThing, ID: thingID}}); err != nil {
		return err
	}
	gs, err := r.st.ListGrants(ctx, store.GrantFilter{UserID: userID, ThingID: thingID})
	for _, g := range gs {
		err = errors.Join(err, r.st.RevokeGrant(ctx, g.ID, time.Now()))
	}
	return err
}

func (r *storeRevoker) RevokeUserGrant(ctx context.Context, _, _, grantID string) error {
	r.record("revoke " + grantID)
	return r.st.RevokeGrant(ctx, grantID, time.Now())
}

func (r *storeRevoker) RevokeShare(ctx context.Context, _, _, id string) error {
	r.record("share " + id)
	return r.st.DeleteUMAShare(ctx, id)
}

// accountEnv serves self-service with the account's pages: real sign-in
// (authn), the identity service on SQLite, mail to an outbox, a clock.
type accountEnv struct {
	*env
	ids     *identity.Service
	outbox  string
	clock   *clock
	revoker *storeRevoker
}

func newAccountEnv(t testing.TB, tune ...func(*Options)) *accountEnv {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ids := identity.New(st, nil, password.Policy{})
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	log := slog.New(slog.DiscardHandler)
	sessions := authn.NewSessions(ids, st, nil, authn.SessionOptions{Key: testKey, BaseURL: srv.URL, Audit: st, Logger: log})
	sessions.Register(mux)
	e := &accountEnv{ids: ids, outbox: filepath.Join(t.TempDir(), "outbox"),
		clock: &clock{t: time.Now()}, revoker: &storeRevoker{ids: ids, st: st}}
	opts := testOptions()
	opts.BaseURL, opts.OutboxDir, opts.Now = srv.URL, e.outbox, e.clock.now
	opts.Account = &Account{Sessions: sessions, Data: st, Revoker: e.revoker}
	for _, f := range tune {
		f(&opts)
	}
	h := New(ids, opts)
	h.Register(mux)
	t.Cleanup(h.pending.Wait)
	jar, _ := cookiejar.New(nil)
	e.env = &env{srv: srv, h: h, store: st, client: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	return e
}

// user creates a user with goodPassword, its address verified or not.
func (e *accountEnv) user(t testing.TB, name string, verified bool) *store.User {
	t.Helper()
	u, err := e.ids.CreateUser(context.Background(), "test", &store.User{UserName: name,
		Emails: []store.MultiValue{{Value: name + "@example.org", Primary: true}}}, goodPassword)
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	if verified {
		if u, err = e.ids.UpdateUser(context.Background(), "test", u.ID, 0, func(u *store.User) error { u.EmailVerified = true; return nil }); err != nil {
			t.Fatalf("verifying %s: %v", name, err)
		}
	}
	return u
}

// signIn signs the env's client in as name with goodPassword, or pw.
func (e *accountEnv) signIn(t testing.TB, name string, pw ...string) {
	t.Helper()
	p := goodPassword
	if len(pw) > 0 {
		p = pw[0]
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/signin", strings.NewReader(`{"userName":"`+name+`","password":"`+p+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signing in %s: %d", name, resp.StatusCode)
	}
}

// send makes a request with a JSON body (or none when body is "").
func (e *accountEnv) send(t testing.TB, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// sent is one e-mail of the outbox.
type sent struct {
	To, Subject, Body string
}

// mails waits for the e-mails sent in the background and returns those of
// the outbox to `to` ("": all), oldest first.
func (e *accountEnv) mails(t testing.TB, to string) []sent {
	t.Helper()
	e.h.pending.Wait()
	files, _ := filepath.Glob(filepath.Join(e.outbox, "*.eml"))
	sort.Strings(files)
	var out []sent
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s is not an RFC 5322 message: %v", name, err)
		}
		body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if to == "" || msg.Header.Get("To") == to {
			out = append(out, sent{To: msg.Header.Get("To"), Subject: msg.Header.Get("Subject"), Body: string(body)})
		}
	}
	return out
}

var (
	resetLinkRE = regexp.MustCompile(`https?://\S+/password/reset\?token=(\S+)`)
	emailLinkRE = regexp.MustCompile(`https?://\S+/account/email/confirm\?token=\S+`)
)

// resetToken returns the token of the one reset link mailed to `to`.
func (e *accountEnv) resetToken(t testing.TB, to string) string {
	t.Helper()
	var tokens []string
	for _, m := range e.mails(t, to) {
		if s := resetLinkRE.FindStringSubmatch(m.Body); s != nil {
			tokens = append(tokens, s[1])
		}
	}
	if len(tokens) != 1 {
		t.Fatalf("%d reset links mailed to %s, want 1", len(tokens), to)
	}
	return tokens[0]
}
