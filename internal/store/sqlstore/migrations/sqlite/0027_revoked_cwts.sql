-- CWTs revoked one by one, by their cti (issue 19, ACE): refused by every
-- node until their exp, after which PurgeExpired deletes the row.
CREATE TABLE revoked_cwts (
	cti        BLOB    NOT NULL PRIMARY KEY,
	expires_at INTEGER NOT NULL,
	revoked    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX revoked_cwts_expires ON revoked_cwts (expires_at);
