package selfservice

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// purposeVerify keeps a MAC made for another use from being accepted here.
const purposeVerify = "thingid selfservice verify-email v1"

var b64 = base64.RawURLEncoding

func (h *Handler) mac(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// csrfToken returns the form's hidden CSRF token (see ui.CSRF).
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	return h.csrf.Token(w, r)
}

// csrfValid reports whether the submitted token matches the request's cookie.
func (h *Handler) csrfValid(r *http.Request, token string) bool {
	return h.csrf.Valid(r, token)
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

func (h *Handler) verifyToken(c verifyClaims) string { return h.sign(purposeVerify, c) }

func (h *Handler) parseVerifyToken(tok string, now time.Time) (verifyClaims, error) {
	var c verifyClaims
	if err := h.open(purposeVerify, tok, &c); err != nil || c.UserID == "" || c.Email == "" {
		return c, errTokenInvalid
	}
	if now.Unix() >= c.Expires {
		return c, errTokenExpired
	}
	return c, nil
}

// sign returns claims as JSON with its MAC for purpose: a link's token that
// nobody without the key can make or change.
func (h *Handler) sign(purpose string, claims any) string {
	payload, _ := json.Marshal(claims)
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(h.mac(purpose, payload))
}

// open reads into claims a token that sign made for purpose, or fails with
// errTokenInvalid.
func (h *Handler) open(purpose, tok string, claims any) error {
	p, s, ok := strings.Cut(tok, ".")
	payload, err1 := decodeB64(p)
	sig, err2 := decodeB64(s)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sig, h.mac(purpose, payload)) {
		return errTokenInvalid
	}
	if json.Unmarshal(payload, claims) != nil {
		return errTokenInvalid
	}
	return nil
}

// decodeB64 decodes unpadded base64url in its one canonical spelling:
// encoding/base64 skips CR and LF, and a token must have one form only.
func decodeB64(s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err == nil && b64.EncodeToString(b) != s {
		return nil, errTokenInvalid
	}
	return b, err
}
