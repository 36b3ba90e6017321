package gateway

import (
	"errors"
	"net/url"
	"strings"
)

// A route is chosen on the request path in one canonical form, and the
// upstream receives that same form: whatever the client wrote, the path that
// was authorised is the path that is served. canonicalPath
//   - decodes percent-encoded unreserved characters (RFC 3986 §6.2.2.2), so
//     %2e%2e is "..", and writes the other escapes in upper case (§6.2.2.1);
//   - refuses an encoded "/" or "\", a backslash, NUL and control
//     characters: upstreams disagree on what they mean;
//   - merges repeated slashes and removes dot segments (§5.2.4), refusing a
//     ".." above the root.
//
// The result is an escaped path: segments split on "/" are exactly the
// segments the upstream sees.

var (
	errPathSyntax  = errors.New("the path must start with / and be percent-encoded correctly")
	errPathEscape  = errors.New("encoded slashes, backslashes and control characters are not allowed in the path")
	errPathTooHigh = errors.New("the path climbs above the root with ..")
)

// maxPathLen bounds the work on a path; longer ones are refused.
const maxPathLen = 8 << 10

// canonicalPath returns the canonical escaped form of an escaped request path.
func canonicalPath(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	if p[0] != '/' || len(p) > maxPathLen {
		return "", errPathSyntax
	}
	if isCanonical(p) {
		return p, nil
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", errPathSyntax
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case v == '/' || v == '\\' || v < 0x20 || v == 0x7f:
				return "", errPathEscape
			case isUnreserved(v):
				b.WriteByte(v)
			default:
				const hexDigits = "0123456789ABCDEF"
				b.WriteByte('%')
				b.WriteByte(hexDigits[v>>4])
				b.WriteByte(hexDigits[v&15])
			}
		case c == '\\' || c < 0x20 || c == 0x7f:
			return "", errPathEscape
		default:
			b.WriteByte(c)
		}
	}
	return removeDots(b.String())
}

// removeDots merges slashes and resolves "." and ".." in an escaped path
// whose escapes are already decoded where they could spell a dot.
func removeDots(p string) (string, error) {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) == 0 {
				return "", errPathTooHigh
			}
			out = out[:len(out)-1]
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	if len(out) == 0 {
		return "/", nil
	}
	res := "/" + strings.Join(out, "/")
	if trailing {
		res += "/"
	}
	return res, nil
}

// isCanonical is the fast path: no escapes, no backslash or control
// characters, no empty or dot segments.
func isCanonical(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%', c == '\\', c < 0x20, c == 0x7f:
			return false
		case c == '/':
			if i+1 < len(p) && p[i+1] == '/' {
				return false
			}
			if i+1 < len(p) && p[i+1] == '.' {
				rest := p[i+1:]
				if rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
					return false
				}
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isUnreserved: RFC 3986 §2.3.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// unescapePath decodes a canonical path for url.URL.Path; canonical paths
// hold no encoded slash, so the decoding is unambiguous.
func unescapePath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	s, err := url.PathUnescape(p)
	if err != nil {
		return p // unreachable for canonical paths, which canonicalPath validated
	}
	return s
}

// canonicalHost is the Host header as routes match it: lower case, without
// port or trailing dot.
func canonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(h, "]"), "["), ".")
	return strings.ToLower(h)
}
