-- The owners of a page of things are read by (to_kind, to_id, kind); with
-- created too (SQLite needs it to choose the index at all, see its 0025)
-- the index answers those reads without visiting the table.
DROP INDEX relationships_to;
CREATE INDEX relationships_to ON relationships (to_kind, to_id, kind, created);

-- Each user's e-mail addresses, lower-cased, indexed by address: an
-- equality filter on emails finds its users by index before checking the
-- document as before (see SQLite's 0025).
CREATE TABLE user_emails (
	value   TEXT NOT NULL,
	user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	PRIMARY KEY (value, user_id)
);
CREATE INDEX user_emails_user ON user_emails (user_id);
INSERT INTO user_emails (value, user_id)
	SELECT DISTINCT lower(e.v ->> 'value'), u.id FROM users AS u, jsonb_array_elements(
		CASE WHEN jsonb_typeof(u.doc -> 'emails') = 'array' THEN u.doc -> 'emails' ELSE '[]'::jsonb END) AS e(v)
	WHERE e.v ->> 'value' IS NOT NULL
	ON CONFLICT DO NOTHING;
