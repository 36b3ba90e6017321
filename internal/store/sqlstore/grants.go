package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

const grantColumns = "id, user_id, client_id, thing_id, scopes, created, last_used, revoked_at"

func scanGrant(s scanner) (*store.Grant, error) {
	var g store.Grant
	err := s.Scan(&g.ID, &g.UserID, &g.ClientID, &g.ThingID, listCol{&g.Scopes}, timeCol{&g.Created},
		timeCol{&g.LastUsed}, timeCol{&g.RevokedAt})
	return &g, err
}

// CreateGrant stores g; ID defaults to a new UUID and Created to now.
func (t *txn) CreateGrant(ctx context.Context, g *store.Grant) error {
	if g.ClientID == "" {
		return errors.New("grant: ClientID is required")
	}
	x := *g
	if x.ID == "" {
		x.ID = newID()
	}
	x.Created, x.LastUsed, x.RevokedAt = orNow(g.Created), normOpt(g.LastUsed), normOpt(g.RevokedAt)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_grants ("+grantColumns+") VALUES "+
		t.placeholders(1, 8, 1)+" ON CONFLICT DO NOTHING",
		x.ID, x.UserID, x.ClientID, x.ThingID, listArg(x.Scopes), f.timeArg(x.Created),
		f.nullTimeArg(x.LastUsed), f.nullTimeArg(x.RevokedAt)))
	if err != nil {
		return fmt.Errorf("create grant of client %s: %w", g.ClientID, err)
	}
	if n == 0 {
		return fmt.Errorf("grant id %q: %w", x.ID, store.ErrConflict)
	}
	*g = x
	return nil
}

// GetGrant returns the grant, revoked or not: the caller checks RevokedAt.
func (t *txn) GetGrant(ctx context.Context, id string) (*store.Grant, error) {
	g, err := scanGrant(t.q.QueryRowContext(ctx, "SELECT "+grantColumns+" FROM oauth_grants WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("grant %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get grant %s: %w", id, err)
	}
	return g, nil
}

// Standing reads the grant, the thing and the user of k in one statement.
func (t *txn) Standing(ctx context.Context, k store.StandingKeys) (store.Standing, error) {
	var (
		s                   store.Standing
		thingStatus, status string
	)
	if t.flavor() == SQLite && t.q == t.s.reads {
		// Three seeks in a local file, which a reader of a WAL database
		// never waits for: cancelling them cannot help, and a context that
		// can be cancelled costs database/sql and the driver a goroutine
		// each per statement, on every CONNECT.
		ctx = context.WithoutCancel(ctx)
	}
	err := t.q.QueryRowContext(ctx, standingSQL[t.flavor()], k.Grant, k.Thing, k.User).Scan(
		joinedCol{&s.Grant.Found, &s.Grant.ClientID}, &s.Grant.UserID, timeCol{&s.Grant.RevokedAt},
		joinedCol{&s.Thing.Found, &thingStatus}, &s.Thing.Model, joinedCol{&s.User.Found, &status})
	if err != nil {
		return store.Standing{}, fmt.Errorf("standing of grant %q, thing %q, user %q: %w", k.Grant, k.Thing, k.User, err)
	}
	s.Thing.Status, s.User.Status = store.Status(thingStatus), store.Status(status)
	return s, nil
}

// standingSQL is Standing's statement in each flavor: a one-row table of
// the three ids (parameters 1 to 3), each joined by its primary key, so
// that an id of nothing stored (or "") gives NULLs rather than no row. A
// NOT NULL column of each table says whether its row was found; the text
// is made once, as Standing runs on every CONNECT.
var standingSQL = map[Flavor]string{SQLite: standingSQLOf(SQLite), Postgres: standingSQLOf(Postgres)}

func standingSQLOf(f Flavor) string {
	return "SELECT g.client_id, COALESCE(g.user_id, ''), g.revoked_at, x.status, COALESCE(x.model, ''), u.status " +
		"FROM (SELECT CAST(" + f.placeholder(1) + " AS TEXT) AS gid, CAST(" + f.placeholder(2) + " AS TEXT) AS tid, " +
		"CAST(" + f.placeholder(3) + " AS TEXT) AS uid) AS k " +
		"LEFT JOIN oauth_grants AS g ON g.id = k.gid LEFT JOIN things AS x ON x.id = k.tid LEFT JOIN users AS u ON u.id = k.uid"
}

// ListGrants returns the matching grants, oldest first.
func (t *txn) ListGrants(ctx context.Context, f store.GrantFilter) ([]*store.Grant, error) {
	q, args := "SELECT "+grantColumns+" FROM oauth_grants WHERE 1 = 1", []any{}
	for _, c := range []struct{ col, v string }{{"user_id", f.UserID}, {"client_id", f.ClientID}, {"thing_id", f.ThingID}} {
		if c.v != "" {
			args = append(args, c.v)
			q += " AND " + c.col + " = " + t.ph(len(args))
		}
	}
	if !f.IncludeRevoked {
		q += " AND revoked_at IS NULL"
	}
	rows, err := t.q.QueryContext(ctx, q+" ORDER BY created, id", args...)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	defer rows.Close()
	var out []*store.Grant
	for rows.Next() {
		g, err := scanGrant(rows)
		if err != nil {
			return nil, fmt.Errorf("list grants: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// RevokeGrant marks the grant revoked (keeping the first RevokedAt) and
// deletes its refresh tokens and unused codes. Used codes stay, so that a
// replayed code is still recognised as reuse (RFC 6749 §4.1.2).
func (t *txn) RevokedGrantsSince(ctx context.Context, since time.Time) (map[string]time.Time, error) {
	if err := checkAt("revoked grants since", since); err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, "SELECT id, revoked_at FROM oauth_grants WHERE revoked_at > "+t.ph(1), t.flavor().timeArg(since))
	if err != nil {
		return nil, fmt.Errorf("revoked grants: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var (
			id string
			at time.Time
		)
		if err := rows.Scan(&id, timeCol{&at}); err != nil {
			return nil, fmt.Errorf("revoked grants: %w", err)
		}
		out[id] = at
	}
	return out, rows.Err()
}

func (t *txn) RevokeGrant(ctx context.Context, id string, at time.Time) error {
	if err := checkAt("revoke grant "+id, at); err != nil {
		return err
	}
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE oauth_grants SET revoked_at = "+t.ph(1)+
		" WHERE id = "+t.ph(2)+" AND revoked_at IS NULL", t.flavor().timeArg(at), id))
	if err != nil {
		return fmt.Errorf("revoke grant %s: %w", id, err)
	}
	if n == 0 {
		if ok, err := t.exists(ctx, "oauth_grants", id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("grant %s: %w", id, store.ErrNotFound)
		}
	}
	// Also when it was revoked before: a token stored since then goes too.
	if _, err := t.q.ExecContext(ctx, "DELETE FROM oauth_refresh_tokens WHERE grant_id = "+t.ph(1), id); err != nil {
		return fmt.Errorf("revoke grant %s: refresh tokens: %w", id, err)
	}
	if _, err := t.q.ExecContext(ctx, "DELETE FROM oauth_auth_codes WHERE grant_id = "+t.ph(1)+" AND used_at IS NULL", id); err != nil {
		return fmt.Errorf("revoke grant %s: authorization codes: %w", id, err)
	}
	return nil
}

// TouchGrant records use at `at`, never moving LastUsed back.
func (t *txn) TouchGrant(ctx context.Context, id string, at time.Time) error {
	if err := checkAt("touch grant "+id, at); err != nil {
		return err
	}
	n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE oauth_grants SET last_used = "+t.ph(1)+
		" WHERE id = "+t.ph(2)+" AND (last_used IS NULL OR last_used < "+t.ph(1)+")", t.flavor().timeArg(at), id))
	if err != nil {
		return fmt.Errorf("touch grant %s: %w", id, err)
	}
	if n == 0 {
		if ok, err := t.exists(ctx, "oauth_grants", id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("grant %s: %w", id, store.ErrNotFound)
		}
	}
	return nil
}

// notRevoked is the condition, on a row aliased x with a grant_id column,
// that its grant is not revoked. A missing grant (or none) does not revoke.
const notRevoked = "NOT EXISTS (SELECT 1 FROM oauth_grants AS g WHERE g.id = x.grant_id AND g.revoked_at IS NOT NULL)"

// returning turns a column list on alias x into a RETURNING list: SQLite
// does not accept qualified names there.
func returning(columns string) string { return strings.ReplaceAll(columns, "x.", "") }

const refreshColumns = "x.hash, x.grant_id, x.client_id, x.scopes, x.created, x.expires_at, x.used_at, x.dpop_jkt, x.resources"

func scanRefresh(s scanner) (*store.RefreshToken, error) {
	var r store.RefreshToken
	err := s.Scan(&r.Hash, &r.GrantID, &r.ClientID, listCol{&r.Scopes}, timeCol{&r.Created}, timeCol{&r.ExpiresAt},
		timeCol{&r.UsedAt}, &r.DPoPJKT, listCol{&r.Resources})
	return &r, err
}

// CreateRefreshToken stores r; Created defaults to now, a zero ExpiresAt never expires.
func (t *txn) CreateRefreshToken(ctx context.Context, r *store.RefreshToken) error {
	if err := checkHash("refresh token", r.Hash); err != nil {
		return err
	}
	if r.GrantID == "" || r.ClientID == "" {
		return errors.New("refresh token: GrantID and ClientID are required")
	}
	x := *r
	x.Created, x.ExpiresAt, x.UsedAt = orNow(r.Created), normOpt(r.ExpiresAt), normOpt(r.UsedAt)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_refresh_tokens (hash, grant_id, client_id, scopes, created, expires_at, used_at, dpop_jkt, resources) VALUES "+
		t.placeholders(1, 9, 1)+" ON CONFLICT DO NOTHING",
		x.Hash, x.GrantID, x.ClientID, listArg(x.Scopes), f.timeArg(x.Created), f.nullTimeArg(x.ExpiresAt),
		f.nullTimeArg(x.UsedAt), x.DPoPJKT, listArg(x.Resources)))
	if err != nil {
		return fmt.Errorf("create refresh token of grant %s: %w", r.GrantID, err)
	}
	if n == 0 {
		return fmt.Errorf("refresh token hash: %w", store.ErrConflict)
	}
	*r = x
	return nil
}

// UseRefreshToken is one conditional UPDATE: of N concurrent callers exactly
// one matches "not used yet" (PostgreSQL re-checks the condition on the row
// after the winner commits; SQLite has one writer).
func (t *txn) UseRefreshToken(ctx context.Context, hash []byte, at time.Time) (*store.RefreshToken, error) {
	if err := checkAt("use refresh token", at); err != nil {
		return nil, err
	}
	f := t.flavor()
	live := t.liveRefresh()
	r, err := scanRefresh(t.q.QueryRowContext(ctx, "UPDATE oauth_refresh_tokens AS x SET used_at = "+t.ph(2)+
		" WHERE "+live+" AND x.used_at IS NULL RETURNING "+returning(refreshColumns), hash, f.timeArg(at)))
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("use refresh token: %w", err)
	}
	r, err = t.GetRefreshToken(ctx, hash, at)
	if err != nil {
		return nil, err
	}
	return r, fmt.Errorf("refresh token of grant %s, rotated at %s: %w", r.GrantID, r.UsedAt.Format(time.RFC3339), store.ErrUsed)
}

// liveRefresh selects the refresh token of hash ($1) neither expired at $2
// nor of a revoked grant.
func (t *txn) liveRefresh() string {
	return "x.hash = " + t.ph(1) + " AND (x.expires_at IS NULL OR x.expires_at > " + t.ph(2) + ") AND " + notRevoked
}

// GetRefreshToken reads a live refresh token, used or not.
func (t *txn) GetRefreshToken(ctx context.Context, hash []byte, at time.Time) (*store.RefreshToken, error) {
	if err := checkAt("read refresh token", at); err != nil {
		return nil, err
	}
	r, err := scanRefresh(t.q.QueryRowContext(ctx, "SELECT "+refreshColumns+" FROM oauth_refresh_tokens AS x WHERE "+t.liveRefresh(),
		hash, t.flavor().timeArg(at)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("refresh token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read refresh token: %w", err)
	}
	return r, nil
}

const authCodeColumns = "x.hash, x.client_id, x.user_id, x.session_id, x.redirect_uri, x.scopes, x.nonce, " +
	"x.code_challenge, x.code_challenge_method, x.dpop_jkt, x.auth_time, x.expires_at, x.grant_id, x.used_at, x.resources"

func scanAuthCode(s scanner) (*store.AuthCode, error) {
	var c store.AuthCode
	err := s.Scan(&c.Hash, &c.ClientID, &c.UserID, &c.SessionID, &c.RedirectURI, listCol{&c.Scopes}, &c.Nonce,
		&c.CodeChallenge, &c.CodeChallengeMethod, &c.DPoPJKT, timeCol{&c.AuthTime}, timeCol{&c.ExpiresAt}, &c.GrantID, timeCol{&c.UsedAt}, listCol{&c.Resources})
	return &c, err
}

// CreateAuthCode stores c; a code must expire.
func (t *txn) CreateAuthCode(ctx context.Context, c *store.AuthCode) error {
	if err := checkHash("authorization code", c.Hash); err != nil {
		return err
	}
	if err := checkExpiry("authorization code", c.ExpiresAt); err != nil {
		return err
	}
	if c.ClientID == "" {
		return errors.New("authorization code: ClientID is required")
	}
	x := *c
	x.AuthTime, x.ExpiresAt, x.UsedAt = normOpt(c.AuthTime), normTime(c.ExpiresAt), normOpt(c.UsedAt)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO oauth_auth_codes (hash, client_id, user_id, session_id, redirect_uri, scopes, nonce, "+
		"code_challenge, code_challenge_method, dpop_jkt, auth_time, expires_at, grant_id, used_at, resources) VALUES "+
		t.placeholders(1, 15, 1)+" ON CONFLICT DO NOTHING",
		x.Hash, x.ClientID, x.UserID, x.SessionID, x.RedirectURI, listArg(x.Scopes), x.Nonce, x.CodeChallenge,
		x.CodeChallengeMethod, x.DPoPJKT, f.nullTimeArg(x.AuthTime), f.timeArg(x.ExpiresAt), x.GrantID, f.nullTimeArg(x.UsedAt), listArg(x.Resources)))
	if err != nil {
		return fmt.Errorf("create authorization code of client %s: %w", c.ClientID, err)
	}
	if n == 0 {
		return fmt.Errorf("authorization code hash: %w", store.ErrConflict)
	}
	*c = x
	return nil
}

// UseAuthCode works like UseRefreshToken, except that reuse is reported
// whatever became of the grant.
func (t *txn) UseAuthCode(ctx context.Context, hash []byte, at time.Time) (*store.AuthCode, error) {
	if err := checkAt("use authorization code", at); err != nil {
		return nil, err
	}
	f := t.flavor()
	live := "x.hash = " + t.ph(1) + " AND x.expires_at > " + t.ph(2) + " AND " + notRevoked
	c, err := scanAuthCode(t.q.QueryRowContext(ctx, "UPDATE oauth_auth_codes AS x SET used_at = "+t.ph(2)+
		" WHERE "+live+" AND x.used_at IS NULL RETURNING "+returning(authCodeColumns), hash, f.timeArg(at)))
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("use authorization code: %w", err)
	}
	// A used code is reported as reuse even when its grant is revoked (the
	// revocation kept it for this); an unused one of a revoked grant is not found.
	c, err = scanAuthCode(t.q.QueryRowContext(ctx, "SELECT "+authCodeColumns+" FROM oauth_auth_codes AS x WHERE x.hash = "+t.ph(1)+
		" AND x.expires_at > "+t.ph(2), hash, f.timeArg(at)))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && c.UsedAt.IsZero()) {
		return nil, fmt.Errorf("authorization code: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("use authorization code: %w", err)
	}
	return c, fmt.Errorf("authorization code of client %s, used at %s: %w", c.ClientID, c.UsedAt.Format(time.RFC3339), store.ErrUsed)
}
