package oauth

import "strings"

// scopeView is a scope as a consent page shows it: what it lets the client
// do, in words, with the scope's name beside it for those who know it.
type scopeView struct{ Name, Text string }

// scopeTexts are the built-in descriptions; Options.ScopeDescriptions
// replaces or adds to them.
var scopeTexts = map[string]string{
	"openid":           "Sign you in with your account",
	"profile":          "See your name and user name",
	"email":            "See your e-mail address",
	"offline_access":   "Keep this access while you are away, until you revoke it",
	"device":           "Let this device act for your account",
	"uma_protection":   "Manage how resources you own are shared",
	"authzen:evaluate": "Ask the platform's access rules for decisions",
	"scim:read":        "Read users, devices and groups",
	"scim:write":       "Create, change and delete users, devices and groups",
	"admin":            "Administer the platform",
}

// describeScopes says in words what each scope lets the client do. A scope
// with no description is shown by its name.
func (s *Server) describeScopes(scopes []string) []scopeView {
	out := make([]scopeView, 0, len(scopes))
	for _, sc := range scopes {
		out = append(out, scopeView{Name: sc, Text: s.scopeText(sc)})
	}
	return out
}

func (s *Server) scopeText(sc string) string {
	if t, ok := s.opts.ScopeDescriptions[sc]; ok {
		return t
	}
	if t, ok := scopeTexts[sc]; ok {
		return t
	}
	if f, ok := strings.CutPrefix(sc, "mqtt:pub:"); ok {
		return "Send messages on the topics " + f
	}
	if f, ok := strings.CutPrefix(sc, "mqtt:sub:"); ok {
		return "Receive messages on the topics " + f
	}
	return sc
}
