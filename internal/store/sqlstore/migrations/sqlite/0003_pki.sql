-- Schema v3 for SQLite: manufacturer CAs and certificate revocations (see
-- store/pki.go). Keep table and column names identical to
-- ../postgres/0003_pki.sql.

CREATE TABLE pki_manufacturer_cas (
	id          TEXT    NOT NULL PRIMARY KEY,
	name        TEXT    NOT NULL DEFAULT '',
	fingerprint TEXT    NOT NULL UNIQUE,
	subject     TEXT    NOT NULL DEFAULT '',
	not_after   INTEGER NOT NULL,
	certificate BLOB    NOT NULL,
	-- the provisioning template as JSON
	template    TEXT    NOT NULL,
	created     INTEGER NOT NULL
);
CREATE INDEX pki_manufacturer_cas_created ON pki_manufacturer_cas (created, id);

-- A revocation is permanent: rows are only ever inserted.
CREATE TABLE pki_revoked_certs (
	seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	fingerprint TEXT    NOT NULL UNIQUE,
	serial      TEXT    NOT NULL DEFAULT '',
	authority   TEXT    NOT NULL DEFAULT '',
	issuer      TEXT    NOT NULL DEFAULT '',
	thing_id    TEXT    NOT NULL DEFAULT '',
	reason      INTEGER NOT NULL DEFAULT 0,
	revoked_at  INTEGER NOT NULL,
	not_after   INTEGER
);
