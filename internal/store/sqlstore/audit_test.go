package sqlstore

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzPrefixEnd: the range [p, prefixEnd(p)) holds exactly the strings
// starting with p, in the byte order both databases compare in.
func FuzzPrefixEnd(f *testing.F) {
	for _, seed := range [][2]string{{"uma.", "uma.share"}, {"uma.", "uma/"}, {"a\U0010FFFF", "a\U0010FFFF\U0010FFFF"}, {"\U0010FFFF", "z"},
		{"\uD7FF", "\uE000"}, {"", "x"}, {"admin:", "admin;"}, {"ä", "äb"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if !utf8.ValidString(p) || !utf8.ValidString(s) {
			return // the store refuses invalid UTF-8 before comparing
		}
		end, ok := prefixEnd(p)
		if ok && !utf8.ValidString(end) {
			t.Fatalf("prefixEnd(%q) = %q, not valid UTF-8", p, end)
		}
		inRange := s >= p && (!ok || s < end)
		if inRange != strings.HasPrefix(s, p) {
			t.Fatalf("p %q, s %q: in [p, %q) (bounded %v) is %v, HasPrefix is %v", p, s, end, ok, inRange, !inRange)
		}
	})
}
