-- Factory batches (issue 15): each run of `thingid factory issue` (resumed
-- runs of one output directory are one batch) and the things it made,
-- recorded in the transaction that stores the things. A batch is never
-- deleted; deleting a thing takes it out of its batch. issued counts the
-- things the batch made, planned the devices it was started with.
CREATE TABLE factory_batches (
	id               TEXT    NOT NULL PRIMARY KEY,
	created          INTEGER NOT NULL,
	actor            TEXT    NOT NULL DEFAULT '',
	model            TEXT    NOT NULL,
	manufacturer     TEXT    NOT NULL DEFAULT '',
	planned          INTEGER NOT NULL,
	issued           INTEGER NOT NULL DEFAULT 0,
	first_serial     TEXT    NOT NULL DEFAULT '',
	last_serial      TEXT    NOT NULL DEFAULT '',
	ca_subject       TEXT    NOT NULL DEFAULT '',
	ca_fingerprint   TEXT    NOT NULL DEFAULT '',
	validity_seconds INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX factory_batches_created ON factory_batches (created, id);
CREATE TABLE factory_batch_things (
	batch_id TEXT NOT NULL REFERENCES factory_batches (id),
	thing_id TEXT NOT NULL REFERENCES things (id) ON DELETE CASCADE,
	PRIMARY KEY (batch_id, thing_id)
) WITHOUT ROWID;
CREATE INDEX factory_batch_things_thing ON factory_batch_things (thing_id);

-- The issuer of each certificate recorded on a thing, so that the console
-- counts the things of a manufacturer CA by an index.
ALTER TABLE thing_certificates ADD COLUMN issuer TEXT NOT NULL DEFAULT '';
UPDATE thing_certificates SET issuer = COALESCE((
	SELECT json_extract(c.value, '$.issuer')
	FROM things AS x, json_each(x.doc, '$.certificates') AS c
	WHERE x.id = thing_certificates.thing_id AND json_extract(c.value, '$.fingerprintSha256') = thing_certificates.fingerprint
	LIMIT 1), '');
CREATE INDEX thing_certificates_issuer ON thing_certificates (issuer, thing_id);
