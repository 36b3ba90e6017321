-- Invitations name the invitee as the guardian did, by user name or by
-- e-mail address (lower-cased in Go), not by account: whoever holds that
-- name, or has verified that address, when answering is the invitee. So
-- inviting looks no account up and tells the guardian nothing about which
-- accounts exist (issue 14). An invitation no longer goes with a deleted
-- account; it expires.
ALTER TABLE household_invitations
	ADD COLUMN invitee_name  TEXT NOT NULL DEFAULT '',
	ADD COLUMN invitee_email TEXT NOT NULL DEFAULT '';
UPDATE household_invitations i SET invitee_name = u.user_name_lower FROM users u WHERE u.id = i.invitee_id;
ALTER TABLE household_invitations DROP COLUMN invitee_id;
ALTER TABLE household_invitations ADD CONSTRAINT household_invitations_invitee
	CHECK ((invitee_name = '') <> (invitee_email = ''));
CREATE INDEX household_invitations_name ON household_invitations (invitee_name) WHERE invitee_name <> '';
CREATE INDEX household_invitations_email ON household_invitations (invitee_email) WHERE invitee_email <> '';
