package selfservice

import (
	"context"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var linkRE = regexp.MustCompile(`https?://\S+/register/verify\?token=\S+`)

func TestEmailVerificationThroughOutbox(t *testing.T) {
	opts := testOptions()
	opts.EmailVerification = true
	opts.OutboxDir = filepath.Join(t.TempDir(), "outbox")
	e := newEnv(t, opts)

	resp, body := e.postJSON(t, `{"userName":"frank","email":"frank@example.org","displayName":"Frank","password":"`+goodPassword+`"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("registration: %d %s", resp.StatusCode, body)
	}
	u, err := e.store.GetUserByName(context.Background(), "frank")
	if err != nil || u.EmailVerified {
		t.Fatalf("new user %+v (%v), want stored and not verified", u, err)
	}

	if fi, err := os.Stat(opts.OutboxDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("outbox %v (%v), want a 0700 directory", fi, err)
	}
	files, _ := filepath.Glob(filepath.Join(opts.OutboxDir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox holds %v, want one .eml", files)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", files[0], fi.Mode().Perm())
	}
	f, _ := os.Open(files[0])
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatalf("the .eml is not an RFC 5322 message: %v", err)
	}
	if msg.Header.Get("To") != "frank@example.org" || !strings.Contains(msg.Header.Get("From"), "no-reply@127.0.0.1") {
		t.Fatalf("headers %v", msg.Header)
	}
	text, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	link := linkRE.FindString(string(text))
	if !strings.HasPrefix(link, e.srv.URL+"/register/verify?token=") {
		t.Fatalf("no verification link to our server in:\n%s", text)
	}

	// A forged token: same claims, signature changed.
	i := strings.LastIndexByte(link, '.') + 1
	flipped := "A"
	if link[i] == 'A' {
		flipped = "B"
	}
	forged := link[:i] + flipped + link[i+1:]
	if resp, page := e.get(t, strings.TrimPrefix(forged, e.srv.URL)); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(page), "Link not valid") {
		t.Fatalf("forged link: %d, want 400 Link not valid:\n%s", resp.StatusCode, page)
	}
	// A token for another user cannot be made without the key.
	other := New(nil, Options{SigningKey: []byte(strings.Repeat("k", 32))}).verifyToken(verifyClaims{UserID: u.ID, Email: "frank@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/register/verify?token="+other); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("token signed with another key: %d, want 400", resp.StatusCode)
	}
	// An expired one.
	expired := e.h.verifyToken(verifyClaims{UserID: u.ID, Email: "frank@example.org", Expires: time.Now().Add(-time.Second).Unix()})
	if resp, page := e.get(t, "/register/verify?token="+expired); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(page), "Link expired") {
		t.Fatalf("expired link: %d, want 400 Link expired:\n%s", resp.StatusCode, page)
	}
	if u, _ := e.store.GetUser(context.Background(), u.ID); u.EmailVerified {
		t.Fatal("a refused link verified the address")
	}

	resp, page := e.get(t, strings.TrimPrefix(link, e.srv.URL))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "E-mail address verified") {
		t.Fatalf("following the link: %d:\n%s", resp.StatusCode, page)
	}
	if u, _ := e.store.GetUser(context.Background(), u.ID); !u.EmailVerified {
		t.Fatal("the address is not verified after following the link")
	}
	// Following it again is harmless.
	if resp, _ := e.get(t, strings.TrimPrefix(link, e.srv.URL)); resp.StatusCode != http.StatusOK {
		t.Fatalf("following the link twice: %d", resp.StatusCode)
	}
}

func TestVerificationTokenForAnAddressNoLongerHeld(t *testing.T) {
	opts := testOptions()
	opts.EmailVerification = true
	opts.OutboxDir = t.TempDir()
	e := newEnv(t, opts)
	if resp, body := e.postJSON(t, `{"userName":"grace","email":"grace@example.org","password":"`+goodPassword+`"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("registration: %d %s", resp.StatusCode, body)
	}
	u, _ := e.store.GetUserByName(context.Background(), "grace")
	tok := e.h.verifyToken(verifyClaims{UserID: u.ID, Email: "old@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/register/verify?token="+tok); resp.StatusCode != http.StatusConflict {
		t.Fatalf("link for an old address: %d, want 409", resp.StatusCode)
	}
	tok = e.h.verifyToken(verifyClaims{UserID: "no-such-user", Email: "grace@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/register/verify?token="+tok); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("link for a deleted user: %d, want 404", resp.StatusCode)
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{Enabled: true, EmailVerification: true, BaseURL: "https://id.example.com", SigningKey: testKey, OutboxDir: "/tmp/x"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mutate := range map[string]func(*Options){
		"no base URL":       func(o *Options) { o.BaseURL = "" },
		"relative base URL": func(o *Options) { o.BaseURL = "/id" },
		"no key":            func(o *Options) { o.SigningKey = nil },
		"short key":         func(o *Options) { o.SigningKey = []byte("short") },
		"nowhere to send":   func(o *Options) { o.OutboxDir = "" },
		"SMTP without From": func(o *Options) { o.SMTP.Host = "smtp.example.com" },
		"negative rate":     func(o *Options) { o.RatePerMinute = -1 },
	} {
		o := ok
		mutate(&o)
		if o.Validate() == nil {
			t.Errorf("%s: Validate accepted %+v", name, o)
		}
	}
}
