// Package topic is MQTT's topic names and filters (MQTT 5 §4.7): which are
// well-formed and whether one filter covers another. It holds no state and
// imports nothing of thingid, so the broker and the authorization server
// (which checks mqtt: scopes at client registration) judge filters alike.
package topic

import (
	"strings"
	"unicode/utf8"
)

// MQTT 5 §4.7 (3.1.1 §4.7 says the same): topic names and filters are UTF-8
// strings of levels separated by '/'; '+' matches one whole level, '#' (last
// level only) matches the parent and any number of levels below it, and a
// wildcard in the first level never matches a topic that starts with '$'.

// ValidName reports whether name is a topic name a client may publish to
// (MQTT 5 §4.7.3: not empty, no wildcard, no U+0000, at most 65535 bytes).
func ValidName(name string) bool {
	return name != "" && len(name) <= 65535 && utf8.ValidString(name) &&
		!strings.ContainsAny(name, "+#\x00")
}

// ValidFilter reports whether f is a well-formed topic filter (§4.7.1):
// '+' and '#' occupy whole levels and '#' is the last level.
func ValidFilter(f string) bool {
	if f == "" || len(f) > 65535 || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
		return false
	}
	// Level by level without splitting: the broker checks every filter it
	// compiles for a CONNECT.
	for rest, more := f, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		if strings.ContainsAny(level, "+#") && len(level) > 1 || level == "#" && more {
			return false
		}
	}
	return true
}

// ShareFilter strips the $share/<group>/ prefix of a shared subscription
// (MQTT 5 §4.8.2): what the subscriber can receive is what the rest matches.
// ok is false for a malformed shared filter.
func ShareFilter(f string) (filter string, ok bool) {
	const prefix = "$share/"
	if len(f) < len(prefix) || !strings.EqualFold(f[:len(prefix)], prefix) {
		return f, true
	}
	group, rest, found := strings.Cut(f[len(prefix):], "/")
	if !found || group == "" || strings.ContainsAny(group, "+#") || rest == "" {
		return "", false
	}
	return rest, true
}

// Covers reports whether every topic that filter sub matches is also matched
// by filter allowed: the test a subscription passes before it is accepted, so
// that no subscription reaches further than the rules that allow it.
func Covers(allowed, sub string) bool {
	if startsWithWildcard(allowed) && isSys(sub) {
		return false // §4.7.2
	}
	for {
		al, arest, amore := strings.Cut(allowed, "/")
		if al == "#" {
			return true
		}
		sl, srest, smore := strings.Cut(sub, "/")
		switch {
		case sl == "#":
			return false // sub reaches any depth here; allowed does not
		case al == "+":
			// one level of anything, and "+" in sub is one level too
		case sl != al:
			return false
		}
		switch {
		case !amore && !smore:
			return true
		case !smore:
			return arest == "#" // the parent of allowed's trailing "/#"
		case !amore:
			return false
		}
		allowed, sub = arest, srest
	}
}

func isSys(t string) bool { return strings.HasPrefix(t, "$") }

func startsWithWildcard(f string) bool { return f != "" && (f[0] == '+' || f[0] == '#') }
