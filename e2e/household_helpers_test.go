package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"
)

// member is a person of the household story on their laptop: a signed-in
// session of the platform's JSON API.
type member struct {
	sp       *storyPlatform
	name, id string
	password string
	c        *http.Client
}

// newMember registers name and signs in.
func newMember(t *testing.T, sp *storyPlatform, name, password string) *member {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	m := &member{sp: sp, name: name, password: password, c: &http.Client{Transport: sp.client.Transport, Jar: jar, Timeout: 30 * time.Second}}
	var reg struct {
		ID string `json:"id"`
	}
	m.send(t, "POST", "/api/v1/register", map[string]string{"userName": name, "email": name + "@example.com", "displayName": strings.ToUpper(name[:1]) + name[1:], "password": password}, http.StatusCreated, &reg)
	m.id = reg.ID
	m.send(t, "POST", "/api/v1/signin", map[string]string{"userName": name, "password": password}, http.StatusOK, nil)
	return m
}

// send sends body as JSON and decodes the answer, which must be want.
func (m *member) send(t *testing.T, method, path string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.sp.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", m.sp.base)
	resp, err := m.c.Do(req)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", m.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s: %s %s: %s %s, want %d", m.name, method, path, resp.Status, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %s %s: %v: %s", m.name, method, path, err, b)
		}
	}
}

// bedtimeZone is the Etc/GMT±N zone where it is 21:xx when it is now UTC:
// past 20:00 on the household's clock whenever the test runs, since the
// server's clock decides and no client sends a time.
func bedtimeZone(now time.Time) string {
	off := (21 - now.UTC().Hour() + 24) % 24
	if off > 11 {
		off -= 24
	}
	switch {
	case off > 0:
		return fmt.Sprintf("Etc/GMT-%d", off)
	case off < 0:
		return fmt.Sprintf("Etc/GMT+%d", -off)
	}
	return "Etc/GMT"
}
