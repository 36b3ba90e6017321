-- Schema v2 for SQLite: what the OAuth 2.0 authorization server stores (see
-- store/oauth.go). Keep table and column names identical to
-- ../postgres/0002_oauth.sql. Credentials are stored only as hashes (BLOB
-- primary keys) and private keys only sealed. Lists are JSON arrays in TEXT.
-- NULL times are "never" (expires_at) or "not yet" (used_at, revoked_at, ...).

CREATE TABLE oauth_clients (
	id          TEXT    NOT NULL PRIMARY KEY,
	name        TEXT    NOT NULL DEFAULT '',
	client_type TEXT    NOT NULL,
	secret_hash BLOB,
	auth_method TEXT    NOT NULL DEFAULT '',
	thing_id    TEXT    NOT NULL DEFAULT '',
	disabled    INTEGER NOT NULL DEFAULT 0,
	created     INTEGER NOT NULL,
	modified    INTEGER NOT NULL,
	revision    INTEGER NOT NULL,
	-- redirectUris, grantTypes, scopes
	doc         TEXT    NOT NULL DEFAULT '{}',
	-- kept byte for byte as registered
	jwks        TEXT
);
CREATE INDEX oauth_clients_thing ON oauth_clients (thing_id) WHERE thing_id <> '';
CREATE INDEX oauth_clients_created ON oauth_clients (created, id);

-- No foreign keys to users, things or clients: deleting one of them revokes
-- nothing by itself (the caller revokes, so that it can publish the
-- revocations), and a grant whose user, thing or client is gone is inert.
CREATE TABLE oauth_grants (
	id         TEXT    NOT NULL PRIMARY KEY,
	user_id    TEXT    NOT NULL DEFAULT '',
	client_id  TEXT    NOT NULL,
	thing_id   TEXT    NOT NULL DEFAULT '',
	scopes     TEXT    NOT NULL DEFAULT '[]',
	created    INTEGER NOT NULL,
	last_used  INTEGER,
	revoked_at INTEGER
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id, created) WHERE user_id <> '';
CREATE INDEX oauth_grants_client ON oauth_grants (client_id, created);
CREATE INDEX oauth_grants_thing ON oauth_grants (thing_id, created) WHERE thing_id <> '';

CREATE TABLE oauth_refresh_tokens (
	hash       BLOB    NOT NULL PRIMARY KEY,
	grant_id   TEXT    NOT NULL,
	client_id  TEXT    NOT NULL,
	scopes     TEXT    NOT NULL DEFAULT '[]',
	created    INTEGER NOT NULL,
	expires_at INTEGER,
	used_at    INTEGER,
	dpop_jkt   TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);

CREATE TABLE oauth_auth_codes (
	hash                  BLOB    NOT NULL PRIMARY KEY,
	client_id             TEXT    NOT NULL,
	user_id               TEXT    NOT NULL DEFAULT '',
	session_id            TEXT    NOT NULL DEFAULT '',
	redirect_uri          TEXT    NOT NULL DEFAULT '',
	scopes                TEXT    NOT NULL DEFAULT '[]',
	nonce                 TEXT    NOT NULL DEFAULT '',
	code_challenge        TEXT    NOT NULL DEFAULT '',
	code_challenge_method TEXT    NOT NULL DEFAULT '',
	auth_time             INTEGER,
	expires_at            INTEGER NOT NULL,
	grant_id              TEXT    NOT NULL DEFAULT '',
	used_at               INTEGER
) WITHOUT ROWID;
CREATE INDEX oauth_auth_codes_grant ON oauth_auth_codes (grant_id) WHERE grant_id <> '';

-- user_code is unique among all rows; CreateDeviceCode deletes an expired row
-- holding the code first, so in effect it is unique among live codes.
CREATE TABLE oauth_device_codes (
	hash        BLOB    NOT NULL PRIMARY KEY,
	user_code   TEXT    NOT NULL UNIQUE,
	client_id   TEXT    NOT NULL,
	scopes      TEXT    NOT NULL DEFAULT '[]',
	created     INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	interval_ns INTEGER NOT NULL DEFAULT 0,
	last_polled INTEGER,
	status      TEXT    NOT NULL,
	user_id     TEXT    NOT NULL DEFAULT '',
	grant_id    TEXT    NOT NULL DEFAULT '',
	revision    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE oauth_sessions (
	hash       BLOB    NOT NULL PRIMARY KEY,
	user_id    TEXT    NOT NULL,
	created    INTEGER NOT NULL,
	auth_time  INTEGER,
	last_seen  INTEGER,
	expires_at INTEGER NOT NULL,
	remote_ip  TEXT    NOT NULL DEFAULT '',
	user_agent TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX oauth_sessions_user ON oauth_sessions (user_id, created);

CREATE TABLE oauth_consents (
	user_id   TEXT    NOT NULL,
	client_id TEXT    NOT NULL,
	scopes    TEXT    NOT NULL DEFAULT '[]',
	created   INTEGER NOT NULL,
	PRIMARY KEY (user_id, client_id)
) WITHOUT ROWID;

CREATE TABLE oauth_signing_keys (
	kid        TEXT    NOT NULL PRIMARY KEY,
	alg        TEXT    NOT NULL,
	sealed     BLOB    NOT NULL,
	-- the public JWK, kept byte for byte
	public_jwk TEXT    NOT NULL,
	created    INTEGER NOT NULL,
	retired_at INTEGER,
	expires_at INTEGER
);

CREATE TABLE oauth_replay (
	id         TEXT    NOT NULL PRIMARY KEY,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE oauth_failures (
	id       TEXT    NOT NULL PRIMARY KEY,
	failures INTEGER NOT NULL,
	since    INTEGER NOT NULL
) WITHOUT ROWID;
