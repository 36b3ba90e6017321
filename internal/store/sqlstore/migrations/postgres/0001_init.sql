-- Schema v1 for PostgreSQL. Keep table and column names identical to
-- ../sqlite/0001_init.sql: the query code in sqlstore serves both.
-- Tables are created in the first schema of search_path.

CREATE TABLE users (
	id              TEXT        NOT NULL PRIMARY KEY,
	user_name       TEXT        NOT NULL,
	-- user_name_lower is lower-cased in Go (Unicode-aware, independent of the
	-- database's locale) and carries the case-insensitive uniqueness of userName.
	user_name_lower TEXT        NOT NULL UNIQUE,
	display_name    TEXT        NOT NULL DEFAULT '',
	status          TEXT        NOT NULL DEFAULT '',
	external_id     TEXT        NOT NULL DEFAULT '',
	created         TIMESTAMPTZ NOT NULL,
	modified        TIMESTAMPTZ NOT NULL,
	revision        BIGINT      NOT NULL,
	doc             JSONB       NOT NULL DEFAULT '{}'
);
CREATE INDEX users_external_id ON users (external_id) WHERE external_id <> '';

CREATE TABLE things (
	id               TEXT        NOT NULL PRIMARY KEY,
	display_name     TEXT        NOT NULL DEFAULT '',
	thing_type       TEXT        NOT NULL DEFAULT '',
	manufacturer     TEXT        NOT NULL DEFAULT '',
	model            TEXT        NOT NULL DEFAULT '',
	serial_number    TEXT        NOT NULL DEFAULT '',
	firmware_version TEXT        NOT NULL DEFAULT '',
	location         TEXT        NOT NULL DEFAULT '',
	status           TEXT        NOT NULL DEFAULT '',
	external_id      TEXT        NOT NULL DEFAULT '',
	created          TIMESTAMPTZ NOT NULL,
	modified         TIMESTAMPTZ NOT NULL,
	revision         BIGINT      NOT NULL,
	attributes       JSONB       NOT NULL DEFAULT '{}',
	doc              JSONB       NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX things_serial ON things (manufacturer, model, serial_number) WHERE serial_number <> '';
CREATE INDEX things_external_id ON things (external_id) WHERE external_id <> '';
-- Lookups by serial alone (SCIM filter serialNumber eq) and listing in creation order.
CREATE INDEX things_serial_number ON things (serial_number);
CREATE INDEX things_created ON things (created, id);

-- One row per MAC so that a filter by MAC is a primary-key lookup and a MAC is
-- unique across all things.
CREATE TABLE thing_macs (
	mac      TEXT NOT NULL PRIMARY KEY,
	thing_id TEXT NOT NULL REFERENCES things (id) ON DELETE CASCADE
);
CREATE INDEX thing_macs_thing ON thing_macs (thing_id);

CREATE TABLE groups (
	id                 TEXT        NOT NULL PRIMARY KEY,
	display_name       TEXT        NOT NULL,
	display_name_lower TEXT        NOT NULL UNIQUE,
	external_id        TEXT        NOT NULL DEFAULT '',
	created            TIMESTAMPTZ NOT NULL,
	modified           TIMESTAMPTZ NOT NULL,
	revision           BIGINT      NOT NULL
);
CREATE INDEX groups_external_id ON groups (external_id) WHERE external_id <> '';

-- Edges are polymorphic (user, thing or group at either end), so there are no
-- foreign keys: the store deletes an identity's edges in the transaction that
-- deletes the identity.
CREATE TABLE relationships (
	kind      TEXT        NOT NULL,
	from_kind TEXT        NOT NULL,
	from_id   TEXT        NOT NULL,
	to_kind   TEXT        NOT NULL,
	to_id     TEXT        NOT NULL,
	created   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (kind, from_kind, from_id, to_kind, to_id)
);
CREATE INDEX relationships_from ON relationships (from_kind, from_id);
CREATE INDEX relationships_to ON relationships (to_kind, to_id, kind);

CREATE TABLE audit (
	seq         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time        TIMESTAMPTZ NOT NULL,
	actor       TEXT        NOT NULL,
	action      TEXT        NOT NULL,
	target_kind TEXT        NOT NULL DEFAULT '',
	target_id   TEXT        NOT NULL DEFAULT '',
	-- json, not jsonb: the detail is kept byte for byte as it was appended.
	detail      JSON
);
CREATE INDEX audit_target ON audit (target_kind, target_id, seq);

-- The audit log is append-only: refuse changes even from raw SQL.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE api_tokens (
	id         TEXT        NOT NULL PRIMARY KEY,
	name       TEXT        NOT NULL DEFAULT '',
	hash       BYTEA       NOT NULL UNIQUE,
	user_id    TEXT        NOT NULL,
	created    TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
