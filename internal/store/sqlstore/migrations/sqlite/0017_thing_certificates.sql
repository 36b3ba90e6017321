-- The certificates recorded on things, one row each, written with the thing
-- in the same transaction (as thing_macs), so that the certificates expiring
-- soon are read by an index rather than by reading every thing's document,
-- which stays what a thing is read from.
CREATE TABLE thing_certificates (
	thing_id    TEXT    NOT NULL REFERENCES things (id) ON DELETE CASCADE,
	fingerprint TEXT    NOT NULL,
	not_after   INTEGER NOT NULL,
	PRIMARY KEY (thing_id, fingerprint)
) WITHOUT ROWID;
CREATE INDEX thing_certificates_not_after ON thing_certificates (not_after);
INSERT OR IGNORE INTO thing_certificates (thing_id, fingerprint, not_after)
	SELECT x.id, json_extract(c.value, '$.fingerprintSha256'), unixepoch(json_extract(c.value, '$.notAfter')) * 1000000
	FROM things AS x, json_each(x.doc, '$.certificates') AS c
	WHERE json_extract(c.value, '$.notAfter') IS NOT NULL AND json_extract(c.value, '$.fingerprintSha256') IS NOT NULL;
