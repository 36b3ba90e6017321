package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// CSRF is defence in depth behind CrossOrigin: a signed double-submit token
// (OWASP CSRF Prevention Cheat Sheet). The cookie holds a random seed; the
// form's hidden field holds its HMAC, which a cross-site attacker can neither
// read nor compute, and which a cookie planted by a sibling subdomain does not
// match. Components with different keys share the cookie but not the tokens.
type CSRF struct {
	key    []byte
	secure bool
}

// NewCSRF returns a token helper keyed with key (at least 32 bytes, the same on
// every node). secure marks the cookie Secure and names it with the __Host-
// prefix, which pins it to our host, over HTTPS, path / (RFC 6265bis §4.1.3.2).
func NewCSRF(key []byte, secure bool) *CSRF {
	return &CSRF{key: key, secure: secure}
}

const csrfPurpose = "thingid ui csrf v1"

var b64 = base64.RawURLEncoding

// CookieName is the name of the seed cookie.
func (c *CSRF) CookieName() string {
	if c.secure {
		return "__Host-thingid-csrf"
	}
	return "thingid-csrf"
}

func (c *CSRF) mac(seed []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(csrfPurpose))
	m.Write([]byte{0})
	m.Write(seed)
	return m.Sum(nil)
}

// Token returns the hidden-field token for the request, setting a fresh seed
// cookie when the request carries none.
func (c *CSRF) Token(w http.ResponseWriter, r *http.Request) string {
	var seed []byte
	if ck, err := r.Cookie(c.CookieName()); err == nil {
		seed, _ = b64.DecodeString(ck.Value)
	}
	if len(seed) != 32 {
		seed = make([]byte, 32)
		_, _ = rand.Read(seed)
		http.SetCookie(w, &http.Cookie{
			Name: c.CookieName(), Value: b64.EncodeToString(seed), Path: "/",
			HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode,
		})
	}
	return b64.EncodeToString(c.mac(seed))
}

// Valid reports whether the submitted token matches the request's seed cookie.
func (c *CSRF) Valid(r *http.Request, token string) bool {
	ck, err := r.Cookie(c.CookieName())
	if err != nil {
		return false
	}
	seed, err1 := b64.DecodeString(ck.Value)
	got, err2 := b64.DecodeString(token)
	if err1 != nil || err2 != nil || len(seed) != 32 {
		return false
	}
	return hmac.Equal(got, c.mac(seed))
}
