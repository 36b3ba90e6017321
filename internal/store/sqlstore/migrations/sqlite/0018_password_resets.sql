-- Outstanding "forgot password" links (issue 15): the keyed hash of the
-- e-mailed token, never the token. Using a reset deletes it; deleting the
-- user deletes its resets.
CREATE TABLE password_resets (
	hash       BLOB    NOT NULL PRIMARY KEY,
	user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created    INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX password_resets_user ON password_resets (user_id);
