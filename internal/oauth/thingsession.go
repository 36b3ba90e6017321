package oauth

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/store"
)

// A thing that wants a session rather than a token opens one over mutual
// TLS at pathThingSession and then calls the thing endpoints with it, as a
// cookie or as "Authorization: ThingSession <session>", without presenting
// its certificate again (a device whose TLS stack makes client certificates
// expensive). A session is sealed, not stored: it names the thing and the
// certificate it was opened with, and every use checks again that the thing
// is active and the certificate not revoked, so a disable or revocation ends
// it at once.
const (
	pathThingSession   = "/api/v1/things/session"
	thingSessionCookie = "thingid_thing_session"
	thingSessionPrefix = "tts_"
)

// errSessionRefused wraps every refusal of a thing session.
var errSessionRefused = errors.New("thing session refused")

type thingSessionClaims struct {
	Thing string `json:"t"`
	X5T   string `json:"x"`
	Exp   int64  `json:"e"`
	Nonce string `json:"n"`
}

// serveThingSession opens a session for the thing whose certificate the
// connection presents.
func (s *Server) serveThingSession(w http.ResponseWriter, r *http.Request) {
	id, ok := s.thingCertificate(w, r)
	if !ok {
		return
	}
	exp := s.now().Add(s.opts.AccessTokenLifetime)
	payload, _ := json.Marshal(thingSessionClaims{Thing: id.Thing.ID, X5T: id.Thumbprint, Exp: exp.Unix(),
		Nonce: base64.RawURLEncoding.EncodeToString(randomBytes(12))})
	mac := keyedHash(s.thingSessionKey, "thing-session", string(payload))
	session := thingSessionPrefix + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(mac)
	http.SetCookie(w, &http.Cookie{Name: thingSessionCookie, Value: session, Path: "/api/v1/things/", Expires: exp,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, struct {
		Session   string `json:"session"`
		ThingID   string `json:"thingId"`
		ExpiresIn int64  `json:"expiresIn"`
	}{session, id.Thing.ID, int64(s.opts.AccessTokenLifetime / time.Second)})
}

// thingSessionOf is the request's session: the ThingSession authorization,
// else the cookie; "" for none.
func thingSessionOf(r *http.Request) string {
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "ThingSession "); ok {
		return strings.TrimSpace(v)
	}
	if c, err := r.Cookie(thingSessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// thingSession checks a session and returns the identity it stands for.
func (s *Server) thingSession(ctx context.Context, raw string) (*certauth.Identity, error) {
	refuse := func(why string) (*certauth.Identity, error) { return nil, fmt.Errorf("%w: %s", errSessionRefused, why) }
	body, ok := strings.CutPrefix(raw, thingSessionPrefix)
	p64, m64, ok2 := strings.Cut(body, ".")
	if !ok || !ok2 || len(raw) > 1024 {
		return refuse("malformed session")
	}
	payload, err1 := base64.RawURLEncoding.Strict().DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.Strict().DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, keyedHash(s.thingSessionKey, "thing-session", string(payload))) {
		return refuse("malformed or tampered session")
	}
	var cl thingSessionClaims
	if err := json.Unmarshal(payload, &cl); err != nil || cl.Thing == "" || cl.X5T == "" {
		return refuse("malformed session")
	}
	if !s.now().Before(time.Unix(cl.Exp, 0)) {
		return refuse("the session has expired; open a new one with the certificate")
	}
	if s.opts.Certificates == nil || s.opts.Certificates.Revoked(cl.X5T) {
		return refuse("the certificate the session was opened with is revoked")
	}
	t, err := s.opts.Identities.GetThing(ctx, cl.Thing)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refuse("the thing no longer exists")
	case err != nil:
		return nil, err
	case t.Status != store.StatusActive:
		return refuse("the thing is disabled")
	}
	return &certauth.Identity{Thing: t, Thumbprint: cl.X5T}, nil
}
