package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// authorizationReaders are the files that may read a request's
// Authorization header themselves, each for a credential that is not an
// OAuth access token; access tokens are read by tokens.FromRequest alone,
// which gathers the evidence of their sender binding.
var authorizationReaders = map[string]string{
	"internal/tokens/presentation.go": "the one reader of access tokens and their evidence",
	"internal/authn/admin.go":         "HTTP Basic and admin API tokens (tid_adm_), which are not OAuth tokens",
	"internal/oauth/clientauth.go":    "client authentication at the token endpoint (RFC 6749 §2.3.1)",
	"internal/oauth/register.go":      "the registration token of dynamic registration (RFC 7591 §3.1)",
	"internal/oauth/thingsession.go":  "thing sessions (ThingSession scheme)",
	"internal/ace/http.go":            "a resource server's Basic credentials at ACE introspection (RFC 9200 §5.9.1), handed to oauth's client authentication",
	"internal/oauth/ace.go":           "sets those Basic credentials on the request oauth's client authentication reads",
	"internal/oauth/userinfo.go":      "only to tell another scheme from no token, after tokens.FromRequest",
	"internal/gateway/oauth2.go":      "only to tell another scheme from no token, after tokens.FromRequest",
	"internal/gateway/proxy.go":       "removes the header before proxying",
	"internal/est/enroll.go":          "EST enrollment tokens (RFC 7030 §3.2.3)",
	"internal/demo/cloud.go":          "the demo's upstream records what the gateway forwarded",
}

var readsAuthorization = regexp.MustCompile(`"Authorization"|\.BasicAuth\(\)`)

// TestAuthorizationHeaderReaders: a new place that reads the Authorization
// header fails here until it is listed above with its reason; if it reads
// an access token, it must use tokens.FromRequest instead (issue 12 item 2).
func TestAuthorizationHeaderReaders(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			for i, line := range strings.Split(string(b), "\n") {
				if readsAuthorization.MatchString(line) && !strings.Contains(line, `Header.Set("Authorization"`) {
					if _, ok := authorizationReaders[rel]; !ok {
						t.Errorf("%s:%d reads the Authorization header: access tokens must be read by tokens.FromRequest (or list the file in authorizationReaders with why): %s", rel, i+1, strings.TrimSpace(line))
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
