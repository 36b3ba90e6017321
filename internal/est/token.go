package est

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Enrollment tokens authenticate a thing's first simpleenroll (RFC 7030
// §3.2.3: HTTP Basic with the thing id as user name and the token as
// password, or the token as a Bearer credential). A token is
//
//	TokenPrefix + base64url(version | expiry (8 bytes, Unix seconds) | id (16 random bytes) | thing id | HMAC-SHA256)
//
// under a key derived from the master key, so that nothing about an
// outstanding token is stored: the MAC binds it to its thing and its expiry,
// and its single use is a replay record (store.UseOnce) keyed by an HMAC of
// the token's random id, written in the transaction that records the issued certificate.
// A failed enrollment therefore leaves the token usable; a successful one
// spends it on every node at once.

// TokenPrefix starts every enrollment token, so that one found in a log or a
// repository is recognisable.
const TokenPrefix = "thingid_est_"

const (
	tokenVersion = 1
	tokenIDLen   = 16
	tokenMACLen  = sha256.Size
	// DefaultTokenLifetime is a token's validity when the administrator gives none.
	DefaultTokenLifetime = 24 * time.Hour
	// MaxTokenLifetime bounds it: a token is a bearer secret.
	MaxTokenLifetime = 90 * 24 * time.Hour
	maxThingIDLen    = 128
	lifetimeRange    = "must be between 1 minute and 90 days (60 to 7776000 seconds)"
	maxTokenLen      = len(TokenPrefix) + (1+8+tokenIDLen+maxThingIDLen+tokenMACLen)*4/3 + 4
)

// Token is a newly created enrollment token; Secret is shown once.
type Token struct {
	Secret    string    `json:"token"`
	ID        string    `json:"id"` // in the audit log; not a secret
	ThingID   string    `json:"thingId"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// tokenClaims is what a verified token says.
type tokenClaims struct {
	id      string
	thingID string
	expires time.Time
}

// Refusals of an enrollment token; the messages go to the client.
var (
	errTokenInvalid = errors.New("the enrollment token is not valid (mistyped, or made by another platform)")
	errTokenExpired = errors.New("the enrollment token has expired; ask an administrator for a new one")
	errTokenUsed    = errors.New("the enrollment token was used already; each token enrolls once, ask an administrator for a new one")
)

// CreateToken makes a one-time enrollment token for thing, valid for ttl (0:
// DefaultTokenLifetime). The thing must exist, be active and have a serial
// number, which its certificate will carry. The creation is audited
// (est.token.create) without the secret.
func (s *Server) CreateToken(ctx context.Context, actor, thingID string, ttl time.Duration) (*Token, error) {
	if ttl == 0 {
		ttl = DefaultTokenLifetime
	}
	if ttl < time.Minute || ttl > MaxTokenLifetime {
		return nil, refusal.New("expiresIn", lifetimeRange)
	}
	th, err := s.opts.Identity.GetThing(ctx, thingID)
	if err != nil {
		return nil, err
	}
	if len(th.ID) > maxThingIDLen {
		return nil, refusal.New("id", "thing ids of more than %d characters cannot be enrolled", maxThingIDLen)
	}
	if err := enrollable(th); err != nil {
		return nil, err
	}
	tok := s.mint(th.ID, time.Now().Add(ttl))
	detail, _ := json.Marshal(map[string]string{"tokenId": tok.ID, "expiresAt": tok.ExpiresAt.Format(time.RFC3339)})
	err = s.opts.Audit.AppendAudit(ctx, store.AuditRecord{Time: time.Now().UTC(), Actor: actor, Action: "est.token.create",
		Target: store.Ref{Kind: store.KindThing, ID: th.ID}, Detail: detail})
	if err != nil {
		return nil, err
	}
	return tok, nil
}

// mint makes a token for thingID valid until exp (to the second).
func (s *Server) mint(thingID string, exp time.Time) *Token {
	var id [tokenIDLen]byte
	rand.Read(id[:])
	exp = exp.Truncate(time.Second)
	return &Token{Secret: s.encode(id[:], thingID, exp), ID: hex.EncodeToString(id[:]), ThingID: thingID, ExpiresAt: exp.UTC()}
}

// encode spells a token out.
func (s *Server) encode(id []byte, thingID string, exp time.Time) string {
	raw := make([]byte, 0, 1+8+tokenIDLen+len(thingID)+tokenMACLen)
	raw = append(raw, tokenVersion)
	raw = binary.BigEndian.AppendUint64(raw, uint64(exp.Unix()))
	raw = append(raw, id...)
	raw = append(raw, thingID...)
	raw = append(raw, s.tokenMAC(raw)...)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
}

// enrollable says why a thing cannot get a platform certificate, or nil.
func enrollable(th *store.Thing) error {
	if th.Status != store.StatusActive {
		return refuse(http.StatusForbidden, "thing %s is disabled; an administrator must enable it before it can enroll", th.ID)
	}
	if th.SerialNumber == "" {
		return refusal.New("serialNumber", "thing %s has no serial number, which its certificate must carry; set one first", th.ID)
	}
	return nil
}

func (s *Server) tokenMAC(raw []byte) []byte {
	m := hmac.New(sha256.New, s.opts.TokenKey)
	m.Write([]byte("est enrollment token"))
	m.Write(raw)
	return m.Sum(nil)
}

// parseToken checks a token's MAC and expiry.
func (s *Server) parseToken(secret string, now time.Time) (*tokenClaims, error) {
	enc, ok := strings.CutPrefix(secret, TokenPrefix)
	if !ok || len(secret) > maxTokenLen {
		return nil, errTokenInvalid
	}
	// Strict: one token has one spelling, so that no variant of a spent
	// token reads as another.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(raw) < 1+8+tokenIDLen+1+tokenMACLen || raw[0] != tokenVersion {
		return nil, errTokenInvalid
	}
	body, mac := raw[:len(raw)-tokenMACLen], raw[len(raw)-tokenMACLen:]
	if !hmac.Equal(mac, s.tokenMAC(body)) {
		return nil, errTokenInvalid
	}
	c := &tokenClaims{
		expires: time.Unix(int64(binary.BigEndian.Uint64(body[1:9])), 0),
		id:      hex.EncodeToString(body[9 : 9+tokenIDLen]),
		thingID: string(body[9+tokenIDLen:]),
	}
	if !now.Before(c.expires) {
		return nil, errTokenExpired
	}
	return c, nil
}

// useKey is the replay record of a spent token: a keyed hash of its random
// id (under the MAC, so one per token however it is spelled), never the token.
func (s *Server) useKey(c *tokenClaims) string {
	m := hmac.New(sha256.New, s.opts.TokenKey)
	m.Write([]byte("est enrollment token use"))
	m.Write([]byte(c.id))
	return "est-token:" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
