-- Schema v3 for PostgreSQL: manufacturer CAs and certificate revocations (see
-- store/pki.go). Keep table and column names identical to
-- ../sqlite/0003_pki.sql.

CREATE TABLE pki_manufacturer_cas (
	id          TEXT        NOT NULL PRIMARY KEY,
	name        TEXT        NOT NULL DEFAULT '',
	fingerprint TEXT        NOT NULL UNIQUE,
	subject     TEXT        NOT NULL DEFAULT '',
	not_after   TIMESTAMPTZ NOT NULL,
	certificate BYTEA       NOT NULL,
	-- the provisioning template
	template    JSONB       NOT NULL,
	created     TIMESTAMPTZ NOT NULL
);
CREATE INDEX pki_manufacturer_cas_created ON pki_manufacturer_cas (created, id);

-- A revocation is permanent: rows are only ever inserted. Inserts take an
-- advisory lock so that seq values commit in order (see sqlstore/pki.go).
CREATE TABLE pki_revoked_certs (
	seq         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	fingerprint TEXT        NOT NULL UNIQUE,
	serial      TEXT        NOT NULL DEFAULT '',
	authority   TEXT        NOT NULL DEFAULT '',
	issuer      TEXT        NOT NULL DEFAULT '',
	thing_id    TEXT        NOT NULL DEFAULT '',
	reason      INTEGER     NOT NULL DEFAULT 0,
	revoked_at  TIMESTAMPTZ NOT NULL,
	not_after   TIMESTAMPTZ
);
