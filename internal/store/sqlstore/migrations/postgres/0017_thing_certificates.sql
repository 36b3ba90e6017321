-- The certificates recorded on things, one row each, written with the thing
-- in the same transaction (as thing_macs), so that the certificates expiring
-- soon are read by an index rather than by reading every thing's document,
-- which stays what a thing is read from.
CREATE TABLE thing_certificates (
	thing_id    TEXT        NOT NULL REFERENCES things (id) ON DELETE CASCADE,
	fingerprint TEXT        NOT NULL,
	not_after   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (thing_id, fingerprint)
);
CREATE INDEX thing_certificates_not_after ON thing_certificates (not_after);
INSERT INTO thing_certificates (thing_id, fingerprint, not_after)
	SELECT x.id, c ->> 'fingerprintSha256', (c ->> 'notAfter')::timestamptz
	FROM things AS x, jsonb_array_elements(COALESCE(x.doc -> 'certificates', '[]'::jsonb)) AS c
	WHERE c ->> 'notAfter' IS NOT NULL AND c ->> 'fingerprintSha256' IS NOT NULL
	ON CONFLICT DO NOTHING;
