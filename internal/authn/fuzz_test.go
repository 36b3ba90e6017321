package authn

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeCredentials: the JSON sign-in decoding never panics, answers only
// 400 or 413 when it refuses, and accepts exactly one object with both members.
func FuzzDecodeCredentials(f *testing.F) {
	for _, seed := range []string{
		`{"userName":"alice","password":"` + alicePassword + `"}`,
		`{"userName":"alice"}`, `{"userName":1,"password":"x"}`, `{"userName":"a","password":"b","admin":true}`,
		`{"userName":"a","password":"b"}{}`, `[]`, `null`, `{`, ``, `"x"`, `{"userName":"\u0000","password":"\ud800"}`,
		`{"USERNAME":"a","password":"b"}`, "{\"userName\":\"\xff\",\"password\":\"b\"}", strings.Repeat("[", 10000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		c, status, detail := decodeCredentials(http.MaxBytesReader(nil, readCloser{strings.NewReader(body)}, maxSignInBody))
		switch status {
		case 0:
			if c.UserName == "" || c.Password == "" || detail != "" {
				t.Fatalf("accepted %q as %+v", body, c)
			}
			var again credentials
			if err := json.Unmarshal([]byte(body), &again); err != nil || again != c {
				t.Fatalf("accepted %q, which encoding/json reads as %+v (%v)", body, again, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if detail == "" {
				t.Fatalf("refused %q without saying why", body)
			}
		default:
			t.Fatalf("status %d for %q", status, body)
		}
	})
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
