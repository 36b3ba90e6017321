package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// methodScopes is a filter's scopes table: a request needs the scopes of its
// method plus those of "*"; a method the table does not name needs those of
// "*" alone; HEAD needs GET's unless HEAD is named. The oauth2 filter checks
// them in the token's scope, the uma filter in the RPT's permission for the
// request's resource.
type methodScopes struct {
	byMethod map[string][]string // "*"'s included
	any      []string
}

// parseMethodScopes checks a scopes table: methods in upper case or "*",
// scope tokens (RFC 6749 §3.3).
func parseMethodScopes(c map[string][]string) (methodScopes, error) {
	for m, ss := range c {
		if m != "*" && (m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t")) {
			return methodScopes{}, fmt.Errorf("scopes: %q is not an HTTP method in upper case or *", m)
		}
		for _, s := range ss {
			if !validScope(s) {
				return methodScopes{}, fmt.Errorf("scopes.%s: %q is not a scope token (RFC 6749 §3.3)", m, s)
			}
		}
	}
	t := methodScopes{byMethod: map[string][]string{}, any: slices.Clone(c["*"])}
	for m, ss := range c {
		if m != "*" {
			t.byMethod[m] = append(slices.Clone(t.any), ss...)
		}
	}
	if _, ok := t.byMethod[http.MethodHead]; !ok && t.byMethod[http.MethodGet] != nil {
		t.byMethod[http.MethodHead] = t.byMethod[http.MethodGet]
	}
	return t, nil
}

// required is the scopes a request with method needs.
func (t methodScopes) required(method string) []string {
	if ss, ok := t.byMethod[method]; ok {
		return ss
	}
	return t.any
}

// validScope: RFC 6749 §3.3 scope-token = 1*NQCHAR.
func validScope(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' })
}
