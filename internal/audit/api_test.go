package audit

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

// env is the audit API on a real SQLite store behind the real administrator
// authentication, served over HTTPS; its callers hold real admin API tokens.
type env struct {
	t     *testing.T
	st    store.Store
	ids   *identity.Service
	srv   *httptest.Server
	users map[string]*store.User
	token map[string]string // user name -> admin API token
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, ids: identity.New(st, nil, password.Policy{}), users: map[string]*store.User{}, token: map[string]string{}}
	tokenKey := []byte("admin token key of this test....")
	admins := authn.NewAdmins(st, tokenKey)
	api, err := NewAPI(Options{Store: st, Key: testKey, Actor: authn.Actor, ReadOnly: authn.ReadOnly,
		Require: func(h http.Handler) http.Handler {
			return admins.RequireReader(h, func(w http.ResponseWriter, r *http.Request, err error) {
				problem.Write(w, http.StatusUnauthorized, "", err.Error())
			})
		},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := routes.New()
	api.Register(mux)
	e.srv = httptest.NewTLSServer(mux)
	t.Cleanup(e.srv.Close)
	ctx := context.Background()
	groups := map[string]string{}
	for _, g := range []string{authn.AdminGroup, authn.SupportGroup} {
		grp, err := e.ids.CreateGroup(ctx, "test", &store.Group{DisplayName: g})
		if err != nil {
			t.Fatal(err)
		}
		groups[g] = grp.ID
	}
	for _, u := range []struct {
		name, group string
		mustChange  bool
	}{{"root", authn.AdminGroup, false}, {"sam", authn.SupportGroup, false}, {"alice", "", false}, {"newbie", authn.SupportGroup, true}} {
		usr, err := e.ids.CreateUser(ctx, "test", &store.User{UserName: u.name, MustChangePassword: u.mustChange}, "")
		if err != nil {
			t.Fatal(err)
		}
		e.users[u.name] = usr
		if u.group != "" {
			if _, err := e.ids.UpdateGroup(ctx, "test", groups[u.group], 0, func(g *store.Group) error {
				g.Members = append(g.Members, store.Ref{Kind: store.KindUser, ID: usr.ID})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		tok, hash := authn.NewToken(tokenKey)
		if err := st.CreateAPIToken(ctx, &store.APIToken{Name: "test", Hash: hash, UserID: usr.ID}); err != nil {
			t.Fatal(err)
		}
		e.token[u.name] = tok
	}
	return e
}

// get reads the API as user ("" for no credentials) with query q.
func (e *env) get(user, q string) (int, list, problem.Details) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+Path+"?"+q, nil)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+e.token[user])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var l list
	var p problem.Details
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
			e.t.Fatalf("%s: Content-Type %q, Cache-Control %q", q, ct, resp.Header.Get("Cache-Control"))
		}
		if err := json.Unmarshal(b, &l); err != nil {
			e.t.Fatalf("%s: %v: %s", q, err, b)
		}
	} else if err := json.Unmarshal(b, &p); err != nil {
		e.t.Fatalf("%s: status %d, not problem details: %s", q, resp.StatusCode, b)
	}
	return resp.StatusCode, l, p
}

func (e *env) append(recs ...store.AuditRecord) {
	e.t.Helper()
	if err := e.st.AppendAudit(context.Background(), recs...); err != nil {
		e.t.Fatal(err)
	}
}

// records are the audit.read records in the log.
func (e *env) reads() []store.AuditRecord {
	e.t.Helper()
	recs, err := e.st.ListAudit(context.Background(), store.AuditQuery{Action: store.TextMatch{Value: ActionRead}, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func actions(l list) []string {
	var out []string
	for _, r := range l.Records {
		out = append(out, r.Action)
	}
	return out
}

func TestAPIFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	thing := store.Ref{Kind: store.KindThing, ID: "th-1"}
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	e.append(
		store.AuditRecord{Time: at, Actor: "admin:x", Action: "uma.share.create", Target: thing, Detail: json.RawMessage(`{"with":"bob"}`)},
		store.AuditRecord{Time: at.Add(time.Minute), Actor: "admin:x via client:c", Action: "uma.rpt.issue", Target: thing},
		store.AuditRecord{Time: at.Add(2 * time.Minute), Actor: "cli", Action: "thing.disable", Target: thing},
	)
	code, l, p := e.get("root", "subject=th-1&subjectKind=thing&action=uma.*&order=oldest")
	if code != 200 || strings.Join(actions(l), " ") != "uma.share.create uma.rpt.issue" || l.Next == "" {
		t.Fatalf("uma.* about th-1: %d %+v %+v", code, l, p)
	}
	r := l.Records[0]
	if r.Actor != "admin:x" || !r.Time.Equal(at) || r.Subject == nil || *r.Subject != thing || string(r.Detail) != `{"with":"bob"}` || r.ID <= 0 {
		t.Fatalf("record: %+v", r)
	}
	if code, l, _ := e.get("root", "actor=admin:x*&since=2025-06-01T12:00:30Z"); code != 200 || strings.Join(actions(l), " ") != "uma.rpt.issue" {
		t.Fatalf("actor prefix since: %d %v", code, actions(l))
	}
	if code, l, _ := e.get("root", "until="+url.QueryEscape("2025-06-01T14:01:00.000001+02:00")); code != 200 || strings.Join(actions(l), " ") != "uma.rpt.issue uma.share.create" {
		t.Fatalf("until, newest first: %d %v", code, actions(l))
	}

	// Pages newest first by a cursor, while records keep coming: each
	// record once, none shifted, and no next after the last page.
	for i := range 7 {
		e.append(store.AuditRecord{Actor: "cli", Action: "session.signin", Target: store.Ref{Kind: store.KindUser, ID: string(rune('a' + i))}})
	}
	var seen []int64
	q := "action=session.signin&limit=3"
	for page := 0; ; page++ {
		code, l, p := e.get("root", q)
		if code != 200 || page > 5 {
			t.Fatalf("page %d: %d %+v", page, code, p)
		}
		for _, r := range l.Records {
			seen = append(seen, r.ID)
		}
		e.append(store.AuditRecord{Actor: "cli", Action: "session.signin", Target: store.Ref{Kind: store.KindUser, ID: "late"}})
		if l.Next == "" {
			break
		}
		q = "action=session.signin&limit=3&cursor=" + l.Next
	}
	if len(seen) != 7 {
		t.Fatalf("newest-first pages returned %d records, want the 7 there were: %v", len(seen), seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] >= seen[i-1] {
			t.Fatalf("not newest first: %v", seen)
		}
	}

	// Oldest first, next always continues: a follower polls with it.
	code, l, _ = e.get("root", "action=thing.*&order=oldest")
	if code != 200 || len(l.Records) != 1 || l.Next == "" {
		t.Fatalf("thing.*: %d %+v", code, l)
	}
	code, l2, _ := e.get("root", "action=thing.*&cursor="+l.Next)
	if code != 200 || len(l2.Records) != 0 || l2.Next != l.Next {
		t.Fatalf("poll with nothing new: %d %+v", code, l2)
	}
	e.append(store.AuditRecord{Actor: "cli", Action: "thing.enable", Target: thing})
	if code, l3, _ := e.get("root", "action=thing.*&cursor="+l2.Next); code != 200 || strings.Join(actions(l3), " ") != "thing.enable" {
		t.Fatalf("poll after an append: %d %+v", code, l3)
	}
	// A cursor with other filters, or altered, is a 400 naming cursor.
	altered := l.Next[:4] + map[bool]string{true: "B", false: "A"}[l.Next[4] == 'A'] + l.Next[5:]
	for _, q := range []string{"action=uma.*&cursor=" + l.Next, "cursor=" + l.Next, "action=thing.*&cursor=" + altered} {
		if code, _, p := e.get("root", q); code != 400 || p.Field != ParamCursor || !strings.Contains(p.Detail, "start again without cursor") {
			t.Errorf("%s: %d %+v", q, code, p)
		}
	}
	if len(e.reads()) != 0 {
		t.Fatalf("an administrator's reads were recorded: %+v", e.reads())
	}
}

func TestAPIBadParameters(t *testing.T) {
	e := newEnv(t)
	for q, field := range map[string]string{
		"since=last+week": "since", "limit=5000": "limit", "order=up": "order", "actor=a%00": "actor",
		"action=a*b": "action", "subjectKind=user": "subjectKind", "user=alice": "user", "limit=1&limit=2": "limit",
	} {
		code, _, p := e.get("root", q)
		if code != 400 || p.Field != field || p.Status != 400 || !strings.HasPrefix(p.Detail, field+":") {
			t.Errorf("%s: %d %+v, want 400 naming %s", q, code, p, field)
		}
	}
}

// Who may read: administrators and support staff with their own
// credentials; nobody else learns anything.
func TestAttackAPIReaders(t *testing.T) {
	e := newEnv(t)
	e.append(store.AuditRecord{Actor: "cli", Action: "user.create"})
	for _, c := range []struct {
		user string
		want int
	}{{"root", 200}, {"sam", 200}, {"alice", 401}, {"newbie", 401}, {"", 401}} {
		code, l, p := e.get(c.user, "")
		if code != c.want || (code != 200 && len(l.Records) != 0) {
			t.Errorf("%q: %d %+v, want %d", c.user, code, p, c.want)
		}
		if c.user == "newbie" && !strings.Contains(p.Detail, "password change required") {
			t.Errorf("a support user with a one-time password is not told to change it: %+v", p)
		}
	}
	// A disabled support user and one removed from the group are refused
	// at once.
	ctx := context.Background()
	if _, err := e.ids.UpdateUser(ctx, "test", e.users["sam"].ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.get("sam", ""); code != 401 {
		t.Errorf("disabled support user: %d", code)
	}
	// A made-up token, and a token with another user's prefix, open nothing.
	req, _ := http.NewRequest("GET", e.srv.URL+Path, nil)
	req.Header.Set("Authorization", "Bearer "+authn.TokenPrefix+"forged")
	if resp, err := e.srv.Client().Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("forged token: %v %v", resp, err)
	}
	// Only GET: the log cannot be written or changed through the API.
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		req, _ := http.NewRequest(m, e.srv.URL+Path, strings.NewReader(`{"actor":"x","action":"y"}`))
		req.Header.Set("Authorization", "Bearer "+e.token["root"])
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, resp.StatusCode)
		}
	}
}

// Support staff's reads are audit records of their own (audit.read, about
// the subject asked for); following the log does not feed it.
func TestSupportReadsAreAudited(t *testing.T) {
	e := newEnv(t)
	sam := "support:" + e.users["sam"].ID
	e.append(store.AuditRecord{Actor: "cli", Action: "thing.disable", Target: store.Ref{Kind: store.KindThing, ID: "th-9"}})
	code, l, _ := e.get("sam", "subject=th-9&order=oldest")
	if code != 200 || len(l.Records) != 1 {
		t.Fatalf("support read: %d %+v", code, l)
	}
	reads := e.reads()
	if len(reads) != 1 || reads[0].Actor != sam || reads[0].Target != (store.Ref{ID: "th-9"}) {
		t.Fatalf("support read recorded as %+v", reads)
	}
	var detail map[string]any
	if err := json.Unmarshal(reads[0].Detail, &detail); err != nil || detail["query"] != "subject=th-9" || detail["order"] != OrderOldest || detail["records"] != 1.0 {
		t.Fatalf("detail %s: %v", reads[0].Detail, err)
	}
	// Follow the whole log: the first poll sees the record of the read
	// above (another record, recorded), the next sees only its own read
	// (not recorded), then nothing (not recorded).
	code, l, _ = e.get("sam", "order=oldest")
	if code != 200 || actions(l)[len(l.Records)-1] != ActionRead || len(e.reads()) != 2 {
		t.Fatalf("first poll: %d %v, %d reads", code, actions(l), len(e.reads()))
	}
	next := l.Next
	for range 3 {
		code, l, _ = e.get("sam", "order=oldest&cursor="+next)
		if code != 200 {
			t.Fatal(code)
		}
		next = l.Next
	}
	if n := len(e.reads()); n != 2 {
		t.Fatalf("following the log grew it to %d reads, want 2", n)
	}
	// Another support user's read is news to sam: recorded.
	e.append(store.AuditRecord{Actor: "support:someone-else", Action: ActionRead})
	if code, l, _ = e.get("sam", "order=oldest&cursor="+next); code != 200 || len(l.Records) != 1 || len(e.reads()) != 4 {
		t.Fatalf("another's read: %d %v, %d reads", code, actions(l), len(e.reads()))
	}
	// A read that found nothing is not recorded.
	if code, _, _ := e.get("sam", "actor=nobody"); code != 200 || len(e.reads()) != 4 {
		t.Fatalf("empty read: %d, %d reads", code, len(e.reads()))
	}
}
