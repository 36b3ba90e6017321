package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
)

// maxSignInBody bounds the sign-in form and JSON body.
const maxSignInBody = 8 << 10

// Outcomes of a sign-in attempt other than success.
var (
	// ErrSignInFailed is the one answer for an unknown user, a wrong password,
	// a disabled user, a user without a password and an account that must wait:
	// telling them apart would let anyone enumerate accounts.
	ErrSignInFailed = errors.New("the user name or password is wrong")
	// ErrThrottled: the client's address made too many attempts.
	ErrThrottled = errors.New("too many sign-in attempts from this network")
)

// attempt is the result of checking credentials.
type attempt struct {
	user  *store.User
	err   error         // nil, ErrSignInFailed, ErrThrottled or a store failure
	retry time.Duration // when not zero, Retry-After
	// result labels the attempt in thingid_signin_total.
	result string
}

// Results of thingid_signin_total. An unknown user, a wrong password, a
// user without a password and a disabled user are all bad_credentials:
// /metrics must not tell anyone what the sign-in page does not (that a
// name exists, or that a guessed password of a disabled account was right).
const (
	resultOK             = "ok"
	resultChangePassword = "password_change_required"
	resultBadCredentials = "bad_credentials"
	resultLocked         = "locked"    // the account waits after failures; the password was not checked
	resultThrottled      = "throttled" // too many attempts from the client's network
	resultError          = "error"     // the store failed
)

// authenticate checks a user name and password from client under the
// brute-force rules. Unknown user and wrong password take the same steps, in
// the same order, at the same cost: the counters, one user lookup, one
// argon2id verification and one audit record. door names where the attempt
// came from in the audit record of a failure when it is not the web sign-in.
func (s *Sessions) authenticate(ctx context.Context, client netip.Addr, door, name, pw string) attempt {
	var u *store.User
	a := s.throttled(ctx, client, accountKey(name), func() (bool, error) {
		var err error
		u, err = s.users.GetUserByName(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("looking up the user: %w", err)
		}
		if u == nil || u.PasswordHash == "" {
			password.Dummy(pw) // same cost as a wrong password: no user enumeration by timing
			return false, nil
		}
		ok, _ := password.Verify(u.PasswordHash, pw)
		// A locked or disabled account gets no session, and is told nothing
		// else than a wrong password would be.
		return ok && u.Status == store.StatusActive, nil
	}, func() {
		target := store.Ref{Kind: store.KindUser}
		if u != nil {
			target.ID = u.ID
		}
		s.auditFailure(ctx, client, door, target)
	})
	if a.err == nil {
		a.user = u
	}
	return a
}

// throttled runs verify, the check of a credential of account acct from
// client, under the brute-force rules: the address's bucket first, then
// the account's back-off (an account that must wait is refused without
// verify), then the failure counted (and failed called) or the account's
// failures forgotten.
func (s *Sessions) throttled(ctx context.Context, client netip.Addr, acct string, verify func() (bool, error), failed func()) attempt {
	now := s.now()
	wait, err := s.allowIP(ctx, client, now)
	if err != nil {
		return attempt{err: err, result: resultError}
	}
	if wait > 0 {
		return attempt{err: ErrThrottled, retry: wait, result: resultThrottled}
	}
	switch wait, err := s.accountWait(ctx, acct, now); {
	case err != nil:
		return attempt{err: err, result: resultError}
	case wait > 0:
		// Refused without looking at the password, whether the account exists
		// or not; the attempt does not count as a failure.
		return attempt{err: ErrSignInFailed, retry: wait, result: resultLocked}
	}
	ok, err := verify()
	if err != nil {
		return attempt{err: err, result: resultError}
	}
	if !ok {
		retry, err := s.failed(ctx, acct, now)
		failed()
		if err != nil {
			return attempt{err: fmt.Errorf("counting the failure: %w", err), result: resultError}
		}
		return attempt{err: ErrSignInFailed, retry: retry, result: resultBadCredentials}
	}
	if err := s.succeeded(ctx, acct); err != nil {
		return attempt{err: fmt.Errorf("resetting the failure count: %w", err), result: resultError}
	}
	return attempt{result: resultOK}
}

// auditFailure records a failed attempt on target from client.
func (s *Sessions) auditFailure(ctx context.Context, client netip.Addr, door string, target store.Ref) {
	detail := map[string]string{"ip": addrString(client)}
	if door != "" {
		detail["door"] = door
	}
	s.audit(ctx, "anonymous", "session.signin-failed", target, detail)
}

// CheckSecret is CheckPassword for an account that is not a user: an OAuth
// client binding to the directory as a service account with its secret.
// verify checks the secret; the same per-address bucket as sign-in's and a
// back-off per client (counted apart from any user's) apply, and a failure
// is audited against the client. It returns nil, ErrSignInFailed,
// ErrThrottled (with the wait) or verify's error.
func (s *Sessions) CheckSecret(ctx context.Context, client netip.Addr, door, clientID string, verify func() (bool, error)) (time.Duration, error) {
	// A user name holds no control character: NUL keeps the two apart.
	a := s.throttled(ctx, client, "\x00client:"+clientID, verify, func() {
		s.auditFailure(ctx, client, door, store.Ref{Kind: "client", ID: clientID})
	})
	return a.retry, a.err
}

// CheckPassword is the sign-in's check of a user name and password for
// another door (LDAP's simple bind; door names it in the audit log): the same
// counters, back-off and throttling as /signin, shared by both. It returns
// the user, or ErrSignInFailed, ErrThrottled (with the wait),
// ErrPasswordChangeRequired (the password was right, but it is a one-time
// password, good only for changing it on /account/password) or a store
// failure.
func (s *Sessions) CheckPassword(ctx context.Context, client netip.Addr, door, name, pw string) (*store.User, time.Duration, error) {
	a := s.authenticate(ctx, client, door, name, pw)
	switch {
	case a.err != nil:
		return nil, a.retry, a.err
	case a.user.MustChangePassword:
		return nil, 0, ErrPasswordChangeRequired
	}
	return a.user, 0, nil
}

// signIn authenticates and, on success, starts a new session. The browser
// form and the JSON API both sign in here, and every attempt is counted
// in thingid_signin_total.
func (s *Sessions) signIn(w http.ResponseWriter, r *http.Request, name, pw string) attempt {
	a := s.authenticate(r.Context(), clientAddr(r), "", name, pw)
	if a.err == nil {
		a = s.startSession(w, r, a)
	}
	s.signins.WithLabelValues(a.result).Inc()
	return a
}

// startSession starts the session of a successful attempt a.
func (s *Sessions) startSession(w http.ResponseWriter, r *http.Request, a attempt) attempt {
	sess, err := s.start(w, r, a.user)
	if err != nil {
		return attempt{err: err, result: resultError}
	}
	if a.user.Locale != "" {
		s.opts.Site.SetLanguage(w, a.user.Locale) // the user's choice follows them to every browser
	}
	s.audit(r.Context(), "user:"+a.user.ID, "session.signin", store.Ref{Kind: store.KindUser, ID: a.user.ID},
		map[string]string{"ip": sess.RemoteIP, "session": publicID(sess.Hash)})
	if a.user.MustChangePassword {
		a.result = resultChangePassword
	}
	return a
}

// audit appends one record when an Auditor is configured; a failure to audit
// is logged, not shown to the user.
func (s *Sessions) audit(ctx context.Context, actor, action string, target store.Ref, detail map[string]string) {
	if s.opts.Audit == nil {
		return
	}
	rec := store.AuditRecord{Time: s.now().UTC(), Actor: actor, Action: action, Target: target}
	if detail != nil {
		rec.Detail, _ = json.Marshal(detail)
	}
	if err := s.opts.Audit.AppendAudit(ctx, rec); err != nil {
		s.log.Error("authn: appending audit record", "action", action, "err", err)
	}
}

// safeReturnTo returns v if it is a path on this site to send the browser to
// after sign-in, and "" otherwise (an open redirect would let a phishing link
// borrow our sign-in page: OWASP Unvalidated Redirects and Forwards Cheat
// Sheet). Only a path starting with exactly one "/" is accepted: "//host" and
// "/\host" are network-path references to browsers (WHATWG URL treats "\" as
// "/"), and browsers drop tabs and newlines, so "/\t/host" is refused too.
func safeReturnTo(v string) string {
	if v == "" || len(v) > 2048 || v[0] != '/' {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return ""
		}
	}
	if len(v) > 1 && v[1] == '/' {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	// Percent-encoded slashes are not slashes to a browser, but a proxy or a
	// later redirect may decode them: refuse what decodes to a network path.
	if p := u.Path; strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return ""
	}
	return v
}
