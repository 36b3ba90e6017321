package selfservice

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Purposes keep a MAC made for one use from being accepted for another.
const (
	purposeCSRF   = "thingid selfservice csrf v1"
	purposeVerify = "thingid selfservice verify-email v1"
)

var b64 = base64.RawURLEncoding

func (h *Handler) mac(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// CSRF defence in depth, behind http.CrossOriginProtection: a signed double-submit
// token (OWASP CSRF Prevention Cheat Sheet). The cookie holds a random value; the
// form's hidden field holds its HMAC, which a cross-site attacker can neither read
// nor compute, and which a cookie planted by a sibling subdomain does not match.

func (h *Handler) csrfCookieName() string {
	if h.secure {
		// The __Host- prefix pins the cookie to our host, over HTTPS, path /.
		return "__Host-thingid-csrf"
	}
	return "thingid-csrf"
}

// csrfToken returns the hidden-field token for the request, setting a fresh
// cookie when the request carries none.
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	var seed []byte
	if c, err := r.Cookie(h.csrfCookieName()); err == nil {
		seed, _ = b64.DecodeString(c.Value)
	}
	if len(seed) != 32 {
		seed = make([]byte, 32)
		_, _ = rand.Read(seed)
		http.SetCookie(w, &http.Cookie{
			Name: h.csrfCookieName(), Value: b64.EncodeToString(seed), Path: "/",
			HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode,
		})
	}
	return b64.EncodeToString(h.mac(purposeCSRF, seed))
}

// csrfValid reports whether the submitted token matches the request's cookie.
func (h *Handler) csrfValid(r *http.Request, token string) bool {
	c, err := r.Cookie(h.csrfCookieName())
	if err != nil {
		return false
	}
	seed, err1 := b64.DecodeString(c.Value)
	got, err2 := b64.DecodeString(token)
	if err1 != nil || err2 != nil || len(seed) != 32 {
		return false
	}
	return hmac.Equal(got, h.mac(purposeCSRF, seed))
}

// verifyClaims is what an e-mail verification link vouches for: this user held
// this address when the link was made, and the link is used before Expires.
type verifyClaims struct {
	UserID  string `json:"sub"`
	Email   string `json:"email"`
	Expires int64  `json:"exp"`
}

var (
	errTokenInvalid = errors.New("verification token forged or damaged")
	errTokenExpired = errors.New("verification token expired")
)

func (h *Handler) verifyToken(c verifyClaims) string {
	payload, _ := json.Marshal(c)
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(h.mac(purposeVerify, payload))
}

func (h *Handler) parseVerifyToken(tok string, now time.Time) (verifyClaims, error) {
	var c verifyClaims
	p, s, ok := strings.Cut(tok, ".")
	payload, err1 := b64.DecodeString(p)
	sig, err2 := b64.DecodeString(s)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sig, h.mac(purposeVerify, payload)) {
		return c, errTokenInvalid
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.UserID == "" || c.Email == "" {
		return c, errTokenInvalid
	}
	if now.Unix() >= c.Expires {
		return c, errTokenExpired
	}
	return c, nil
}
