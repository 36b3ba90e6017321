-- Things' DTLS pre-shared keys (issue 19): one per thing, sealed with the
-- master key (never in clear). key_id names the key in the PSK identity
-- ("<thing id>.<key id>") and changes when the key is re-issued, which
-- replaces the row. Deleting the thing deletes its key.
CREATE TABLE thing_psks (
	thing_id TEXT        NOT NULL PRIMARY KEY REFERENCES things (id) ON DELETE CASCADE,
	key_id   TEXT        NOT NULL,
	sealed   BYTEA       NOT NULL,
	created  TIMESTAMPTZ NOT NULL
);
