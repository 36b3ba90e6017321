package authn

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"time"

	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// Register mounts the sign-in pages, the session API and, when NewSessions got
// an *Admins, the admin session API on mux.
func (s *Sessions) Register(mux routes.Mux) {
	self := func(h http.HandlerFunc) http.Handler { return s.Require(h, denySession) }
	routes := map[string]http.Handler{
		"GET /signin":                  http.HandlerFunc(s.showSignin),
		"POST /signin":                 http.HandlerFunc(s.submitSignin),
		"POST /signout":                http.HandlerFunc(s.signout),
		"GET /account":                 http.HandlerFunc(s.showAccount),
		"POST /account/language":       http.HandlerFunc(s.submitLanguage),
		"GET " + passwordPath:          http.HandlerFunc(s.showPassword),
		"POST " + passwordPath:         http.HandlerFunc(s.submitPassword),
		"POST /api/v1/password":        s.requireAny(http.HandlerFunc(s.passwordJSON), denySession),
		"POST /api/v1/signin":          http.HandlerFunc(s.signinJSON),
		"GET /api/v1/sessions":         self(s.listOwn),
		"DELETE /api/v1/sessions/{id}": self(s.deleteOwn),
		"GET " + assetPrefix:           s.kit.Assets(),
	}
	if s.admins != nil {
		admin := func(h http.HandlerFunc) http.Handler { return s.admins.Require(h, denyAdmin) }
		routes["GET /api/v1/admin/users/{userId}/sessions"] = admin(s.listForAdmin)
		routes["DELETE /api/v1/admin/users/{userId}/sessions"] = admin(s.deleteAllForAdmin)
		routes["DELETE /api/v1/admin/users/{userId}/sessions/{id}"] = admin(s.deleteOneForAdmin)
	}
	cop := ui.CrossOrigin(s.opts.BaseURL, http.HandlerFunc(s.crossOrigin))
	for pattern, h := range routes {
		mux.Handle(pattern, ui.SecurityHeaders(cop.Handler(h)))
	}
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func denySession(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, ErrNoSession) {
		writeProblem(w, http.StatusUnauthorized, "sign in first: POST /api/v1/signin, then send the session cookie")
		return
	}
	if errors.Is(err, ErrPasswordChangeRequired) {
		writeProblem(w, http.StatusForbidden, "password change required: this account signed in with a one-time password; change it with POST /api/v1/password first")
		return
	}
	writeProblem(w, http.StatusInternalServerError, "the session could not be checked because of a problem on our side; try again later")
}

func denyAdmin(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, ErrPasswordChangeRequired) {
		w.Header().Add("WWW-Authenticate", `Basic realm="thingid", charset="UTF-8"`)
		writeProblem(w, http.StatusUnauthorized, MustChangeDetail)
		return
	}
	if !errors.Is(err, ErrUnauthenticated) {
		writeProblem(w, http.StatusInternalServerError, "the credentials could not be checked because of a problem on our side; try again later")
		return
	}
	w.Header().Add("WWW-Authenticate", `Basic realm="thingid", charset="UTF-8"`)
	w.Header().Add("WWW-Authenticate", `Bearer realm="thingid"`)
	writeProblem(w, http.StatusUnauthorized, "administrator credentials required: HTTP Basic with an administrator's user name and password, or an admin API token as a Bearer token")
}

// credentials is the body of POST /api/v1/signin.
type credentials struct {
	UserName string `json:"userName"`
	Password string `json:"password"`
}

// decodeCredentials reads exactly one JSON object with the two string members
// and nothing else. On failure it returns what to tell the client.
func decodeCredentials(body io.Reader) (credentials, int, string) {
	var c credentials
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&c)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		return c, http.StatusBadRequest, "the body must hold exactly one JSON object"
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return c, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body must not be larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return c, http.StatusBadRequest, `the body must be a JSON object {"userName": "...", "password": "..."} with no other member`
	}
	if c.UserName == "" || c.Password == "" {
		return c, http.StatusBadRequest, "userName and password are both required"
	}
	return c, 0, ""
}

// signinJSON is POST /api/v1/signin: 200 with the user's id and a new session
// cookie, or problem details. Requiring application/json keeps HTML forms
// (which cannot send it without a CORS preflight) away from it.
func (s *Sessions) signinJSON(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeProblem(w, http.StatusUnsupportedMediaType, "send the credentials as a JSON object with Content-Type: application/json")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	c, status, detail := decodeCredentials(r.Body)
	if status != 0 {
		writeProblem(w, status, detail)
		return
	}
	a := s.signIn(w, r, c.UserName, c.Password)
	switch {
	case a.err == nil:
		// mustChangePassword: every other API answers 403 until
		// POST /api/v1/password succeeded.
		writeJSON(w, http.StatusOK, struct {
			UserID             string `json:"userId"`
			MustChangePassword bool   `json:"mustChangePassword,omitempty"`
		}{a.user.ID, a.user.MustChangePassword})
	case errors.Is(a.err, ErrSignInFailed):
		retryAfter(w, a.retry)
		writeProblem(w, http.StatusUnauthorized, "the user name or password is wrong")
	case errors.Is(a.err, ErrThrottled):
		secs := retryAfter(w, a.retry)
		writeProblem(w, http.StatusTooManyRequests, fmt.Sprintf("too many sign-in attempts from your network; retry after %d seconds", secs))
	default:
		s.log.Error("authn: sign-in failed", "err", a.err)
		writeProblem(w, http.StatusInternalServerError, "you could not be signed in because of a problem on our side; try again later")
	}
}

// sessionInfo is a session as the API shows it; ID is not the cookie and
// cannot be turned into one.
type sessionInfo struct {
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"lastSeen"`
	ExpiresAt time.Time `json:"expiresAt"`
	RemoteIP  string    `json:"remoteIp,omitempty"`
	UserAgent string    `json:"userAgent,omitempty"`
	Current   bool      `json:"current"`
}

// listSessions returns the user's live sessions, newest first; current marks
// the one whose hash it is.
func (s *Sessions) listSessions(r *http.Request, userID string, current []byte) ([]sessionInfo, error) {
	list, err := s.st.ListSessions(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]sessionInfo, 0, len(list))
	for _, l := range list {
		if s.expired(l, now) {
			continue
		}
		last := l.LastSeen
		if last.IsZero() {
			last = l.Created
		}
		out = append(out, sessionInfo{
			ID: publicID(l.Hash), Created: l.Created.UTC(), LastSeen: last.UTC(),
			ExpiresAt: minTime(l.ExpiresAt, l.Created.Add(s.opts.AbsoluteTimeout), last.Add(s.opts.IdleTimeout)).UTC(),
			RemoteIP:  l.RemoteIP, UserAgent: l.UserAgent, Current: current != nil && bytes.Equal(l.Hash, current),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

func minTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.Before(m) {
			m = t
		}
	}
	return m
}

// findSession returns the hash of the user's session with the public id.
func (s *Sessions) findSession(r *http.Request, userID, id string) ([]byte, error) {
	if b, err := hex.DecodeString(id); err != nil || len(b) != 8 {
		return nil, store.ErrNotFound
	}
	list, err := s.st.ListSessions(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	for _, l := range list {
		if publicID(l.Hash) == id {
			return l.Hash, nil
		}
	}
	return nil, store.ErrNotFound
}

type sessionList struct {
	Sessions []sessionInfo `json:"sessions"`
}

// listOwn is GET /api/v1/sessions.
func (s *Sessions) listOwn(w http.ResponseWriter, r *http.Request) {
	u, sess := SignedIn(r), currentSession(r)
	list, err := s.listSessions(r, u.ID, sess.Hash)
	if err != nil {
		s.log.Error("authn: listing sessions", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the sessions could not be listed because of a problem on our side; try again later")
		return
	}
	writeJSON(w, http.StatusOK, sessionList{list})
}

// deleteOwn is DELETE /api/v1/sessions/{id}: the user ends one of their own
// sessions (the current one too, which signs them out).
func (s *Sessions) deleteOwn(w http.ResponseWriter, r *http.Request) {
	u := SignedIn(r)
	s.terminate(w, r, "user:"+u.ID, u.ID, r.PathValue("id"))
}

func (s *Sessions) terminate(w http.ResponseWriter, r *http.Request, actor, userID, id string) {
	h, err := s.findSession(r, userID, id)
	if err == nil {
		err = s.st.DeleteSession(r.Context(), h)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "no session "+id+" of this user; list them with GET on the sessions collection")
	case err != nil:
		s.log.Error("authn: ending a session", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the session could not be ended because of a problem on our side; try again later")
	default:
		s.audit(r.Context(), actor, "session.terminate", userRef(userID), map[string]string{"session": id})
		w.WriteHeader(http.StatusNoContent)
	}
}

func userRef(id string) store.Ref { return store.Ref{Kind: store.KindUser, ID: id} }

// adminUser reads the user an admin route names, answering 404 if missing.
func (s *Sessions) adminUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("userId")
	_, err := s.users.GetUser(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "no user with id "+id)
		return "", false
	case err != nil:
		s.log.Error("authn: reading a user", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the user could not be read because of a problem on our side; try again later")
		return "", false
	}
	return id, true
}

// listForAdmin is GET /api/v1/admin/users/{userId}/sessions.
func (s *Sessions) listForAdmin(w http.ResponseWriter, r *http.Request) {
	id, ok := s.adminUser(w, r)
	if !ok {
		return
	}
	list, err := s.listSessions(r, id, nil)
	if err != nil {
		s.log.Error("authn: listing sessions", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the sessions could not be listed because of a problem on our side; try again later")
		return
	}
	writeJSON(w, http.StatusOK, sessionList{list})
}

// deleteAllForAdmin is DELETE /api/v1/admin/users/{userId}/sessions: signs the
// user out everywhere.
func (s *Sessions) deleteAllForAdmin(w http.ResponseWriter, r *http.Request) {
	id, ok := s.adminUser(w, r)
	if !ok {
		return
	}
	if err := s.EndUserSessions(r.Context(), Actor(r), id); err != nil {
		s.log.Error("authn: ending a user's sessions", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the sessions could not be ended because of a problem on our side; try again later")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// EndUserSessions signs the user out everywhere for actor (an administrator)
// and audits it as session.terminate-all.
func (s *Sessions) EndUserSessions(ctx context.Context, actor, userID string) error {
	if err := s.st.DeleteUserSessions(ctx, userID); err != nil {
		return err
	}
	s.audit(ctx, actor, "session.terminate-all", userRef(userID), nil)
	return nil
}

// deleteOneForAdmin is DELETE /api/v1/admin/users/{userId}/sessions/{id}.
func (s *Sessions) deleteOneForAdmin(w http.ResponseWriter, r *http.Request) {
	id, ok := s.adminUser(w, r)
	if !ok {
		return
	}
	s.terminate(w, r, Actor(r), id, r.PathValue("id"))
}
