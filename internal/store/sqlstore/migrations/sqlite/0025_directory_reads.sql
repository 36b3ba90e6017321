-- The owners of a page of things (the directory's owner attribute, SCIM's
-- owners) are read by (to_kind, to_id, kind). Without created in the
-- index, SQLite's planner, which has no statistics, preferred scanning
-- every relationship of the kind through the primary key: one read per
-- page cost as many rows as there are things. With created the index
-- covers those reads.
DROP INDEX relationships_to;
CREATE INDEX relationships_to ON relationships (to_kind, to_id, kind, created);

-- Each user's e-mail addresses, lower-cased, one row each, indexed by
-- address: an equality filter on emails (SCIM's emails.value eq, the
-- directory's mail=) finds its users by index before checking the JSON
-- document as before, instead of parsing every user's document. The store
-- writes the rows with the user; doc stays what is read.
CREATE TABLE user_emails (
	value   TEXT NOT NULL,
	user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	PRIMARY KEY (value, user_id)
) WITHOUT ROWID;
CREATE INDEX user_emails_user ON user_emails (user_id);
INSERT OR IGNORE INTO user_emails (value, user_id)
	SELECT lower(json_extract(e.value, '$.value')), u.id FROM users AS u, json_each(u.doc, '$.emails') AS e
	WHERE json_extract(e.value, '$.value') IS NOT NULL;
