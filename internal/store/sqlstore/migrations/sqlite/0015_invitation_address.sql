-- Invitations name the invitee as the guardian did, by user name or by
-- e-mail address (lower-cased in Go), not by account: whoever holds that
-- name, or has verified that address, when answering is the invitee. So
-- inviting looks no account up and tells the guardian nothing about which
-- accounts exist (issue 14). An invitation no longer goes with a deleted
-- account; it expires. SQLite cannot drop a column with a foreign key: the
-- table is rebuilt (nothing refers to it).
CREATE TABLE household_invitations_0015 (
	id            TEXT    NOT NULL PRIMARY KEY,
	household_id  TEXT    NOT NULL REFERENCES households (id) ON DELETE CASCADE,
	invitee_name  TEXT    NOT NULL DEFAULT '',
	invitee_email TEXT    NOT NULL DEFAULT '',
	role          TEXT    NOT NULL,
	invited_by    TEXT    NOT NULL,
	created       INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	CHECK ((invitee_name = '') <> (invitee_email = ''))
) WITHOUT ROWID;
INSERT INTO household_invitations_0015 (id, household_id, invitee_name, role, invited_by, created, expires_at)
	SELECT i.id, i.household_id, u.user_name_lower, i.role, i.invited_by, i.created, i.expires_at
	FROM household_invitations i JOIN users u ON u.id = i.invitee_id;
DROP TABLE household_invitations;
ALTER TABLE household_invitations_0015 RENAME TO household_invitations;
CREATE INDEX household_invitations_household ON household_invitations (household_id);
CREATE INDEX household_invitations_name ON household_invitations (invitee_name) WHERE invitee_name <> '';
CREATE INDEX household_invitations_email ON household_invitations (invitee_email) WHERE invitee_email <> '';
