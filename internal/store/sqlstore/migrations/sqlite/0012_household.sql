-- Households (issue 14): a household is a group (same id) with a time zone
-- and the guardians' rules as structured JSON; members with their role,
-- rooms, things placed in rooms, invitations. Foreign keys delete a
-- household's rows with its group, and a user's or thing's rows with it.
CREATE TABLE households (
	id        TEXT    NOT NULL PRIMARY KEY REFERENCES groups (id) ON DELETE CASCADE,
	time_zone TEXT    NOT NULL,
	rules     TEXT    NOT NULL DEFAULT '[]',
	revision  INTEGER NOT NULL,
	created   INTEGER NOT NULL,
	modified  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE household_members (
	household_id TEXT    NOT NULL REFERENCES households (id) ON DELETE CASCADE,
	user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	role         TEXT    NOT NULL,
	created      INTEGER NOT NULL,
	PRIMARY KEY (household_id, user_id)
) WITHOUT ROWID;
CREATE INDEX household_members_user ON household_members (user_id);

CREATE TABLE household_rooms (
	id           TEXT    NOT NULL PRIMARY KEY,
	household_id TEXT    NOT NULL REFERENCES households (id) ON DELETE CASCADE,
	name         TEXT    NOT NULL,
	name_lower   TEXT    NOT NULL,
	created      INTEGER NOT NULL,
	UNIQUE (household_id, name_lower)
) WITHOUT ROWID;

CREATE TABLE household_things (
	thing_id     TEXT    NOT NULL PRIMARY KEY REFERENCES things (id) ON DELETE CASCADE,
	household_id TEXT    NOT NULL REFERENCES households (id) ON DELETE CASCADE,
	room_id      TEXT    NOT NULL REFERENCES household_rooms (id) ON DELETE CASCADE,
	owner_id     TEXT    NOT NULL,
	created      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX household_things_household ON household_things (household_id);
CREATE INDEX household_things_room ON household_things (room_id);

CREATE TABLE household_invitations (
	id           TEXT    NOT NULL PRIMARY KEY,
	household_id TEXT    NOT NULL REFERENCES households (id) ON DELETE CASCADE,
	invitee_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	role         TEXT    NOT NULL,
	invited_by   TEXT    NOT NULL,
	created      INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX household_invitations_household ON household_invitations (household_id);
CREATE INDEX household_invitations_invitee ON household_invitations (invitee_id);

-- The administrators' Cedar policy set for every household: one row.
CREATE TABLE platform_policies (
	id          INTEGER     NOT NULL PRIMARY KEY CHECK (id = 1),
	source      TEXT        NOT NULL,
	revision    INTEGER     NOT NULL,
	modified    INTEGER     NOT NULL,
	modified_by TEXT        NOT NULL
);
