-- Schema v2 for PostgreSQL: what the OAuth 2.0 authorization server stores
-- (see store/oauth.go). Keep table and column names identical to
-- ../sqlite/0002_oauth.sql. Credentials are stored only as hashes (BYTEA
-- primary keys) and private keys only sealed. Lists are JSONB arrays.
-- NULL times are "never" (expires_at) or "not yet" (used_at, revoked_at, ...).

CREATE TABLE oauth_clients (
	id          TEXT        NOT NULL PRIMARY KEY,
	name        TEXT        NOT NULL DEFAULT '',
	client_type TEXT        NOT NULL,
	secret_hash BYTEA,
	auth_method TEXT        NOT NULL DEFAULT '',
	thing_id    TEXT        NOT NULL DEFAULT '',
	disabled    BOOLEAN     NOT NULL DEFAULT FALSE,
	created     TIMESTAMPTZ NOT NULL,
	modified    TIMESTAMPTZ NOT NULL,
	revision    BIGINT      NOT NULL,
	-- redirectUris, grantTypes, scopes
	doc         JSONB       NOT NULL DEFAULT '{}',
	-- text, not jsonb: kept byte for byte as registered
	jwks        TEXT
);
CREATE INDEX oauth_clients_thing ON oauth_clients (thing_id) WHERE thing_id <> '';
CREATE INDEX oauth_clients_created ON oauth_clients (created, id);

-- No foreign keys to users, things or clients: deleting one of them revokes
-- nothing by itself (the caller revokes, so that it can publish the
-- revocations), and a grant whose user, thing or client is gone is inert.
CREATE TABLE oauth_grants (
	id         TEXT        NOT NULL PRIMARY KEY,
	user_id    TEXT        NOT NULL DEFAULT '',
	client_id  TEXT        NOT NULL,
	thing_id   TEXT        NOT NULL DEFAULT '',
	scopes     JSONB       NOT NULL DEFAULT '[]',
	created    TIMESTAMPTZ NOT NULL,
	last_used  TIMESTAMPTZ,
	revoked_at TIMESTAMPTZ
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id, created) WHERE user_id <> '';
CREATE INDEX oauth_grants_client ON oauth_grants (client_id, created);
CREATE INDEX oauth_grants_thing ON oauth_grants (thing_id, created) WHERE thing_id <> '';

CREATE TABLE oauth_refresh_tokens (
	hash       BYTEA       NOT NULL PRIMARY KEY,
	grant_id   TEXT        NOT NULL,
	client_id  TEXT        NOT NULL,
	scopes     JSONB       NOT NULL DEFAULT '[]',
	created    TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ,
	used_at    TIMESTAMPTZ,
	dpop_jkt   TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);

CREATE TABLE oauth_auth_codes (
	hash                  BYTEA       NOT NULL PRIMARY KEY,
	client_id             TEXT        NOT NULL,
	user_id               TEXT        NOT NULL DEFAULT '',
	session_id            TEXT        NOT NULL DEFAULT '',
	redirect_uri          TEXT        NOT NULL DEFAULT '',
	scopes                JSONB       NOT NULL DEFAULT '[]',
	nonce                 TEXT        NOT NULL DEFAULT '',
	code_challenge        TEXT        NOT NULL DEFAULT '',
	code_challenge_method TEXT        NOT NULL DEFAULT '',
	auth_time             TIMESTAMPTZ,
	expires_at            TIMESTAMPTZ NOT NULL,
	grant_id              TEXT        NOT NULL DEFAULT '',
	used_at               TIMESTAMPTZ
);
CREATE INDEX oauth_auth_codes_grant ON oauth_auth_codes (grant_id) WHERE grant_id <> '';

-- user_code is unique among all rows; CreateDeviceCode deletes an expired row
-- holding the code first, so in effect it is unique among live codes.
CREATE TABLE oauth_device_codes (
	hash        BYTEA       NOT NULL PRIMARY KEY,
	user_code   TEXT        NOT NULL UNIQUE,
	client_id   TEXT        NOT NULL,
	scopes      JSONB       NOT NULL DEFAULT '[]',
	created     TIMESTAMPTZ NOT NULL,
	expires_at  TIMESTAMPTZ NOT NULL,
	interval_ns BIGINT      NOT NULL DEFAULT 0,
	last_polled TIMESTAMPTZ,
	status      TEXT        NOT NULL,
	user_id     TEXT        NOT NULL DEFAULT '',
	grant_id    TEXT        NOT NULL DEFAULT '',
	revision    BIGINT      NOT NULL
);

CREATE TABLE oauth_sessions (
	hash       BYTEA       NOT NULL PRIMARY KEY,
	user_id    TEXT        NOT NULL,
	created    TIMESTAMPTZ NOT NULL,
	auth_time  TIMESTAMPTZ,
	last_seen  TIMESTAMPTZ,
	expires_at TIMESTAMPTZ NOT NULL,
	remote_ip  TEXT        NOT NULL DEFAULT '',
	user_agent TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX oauth_sessions_user ON oauth_sessions (user_id, created);

CREATE TABLE oauth_consents (
	user_id   TEXT        NOT NULL,
	client_id TEXT        NOT NULL,
	scopes    JSONB       NOT NULL DEFAULT '[]',
	created   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (user_id, client_id)
);

CREATE TABLE oauth_signing_keys (
	kid        TEXT        NOT NULL PRIMARY KEY,
	alg        TEXT        NOT NULL,
	sealed     BYTEA       NOT NULL,
	-- text, not jsonb: the public JWK is kept byte for byte
	public_jwk TEXT        NOT NULL,
	created    TIMESTAMPTZ NOT NULL,
	retired_at TIMESTAMPTZ,
	expires_at TIMESTAMPTZ
);

CREATE TABLE oauth_replay (
	id         TEXT        NOT NULL PRIMARY KEY,
	expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE oauth_failures (
	id       TEXT        NOT NULL PRIMARY KEY,
	failures BIGINT      NOT NULL,
	since    TIMESTAMPTZ NOT NULL
);
