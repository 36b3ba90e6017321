-- UMA 2.0 (issue 13): resources registered through the protection API,
-- permission tickets, owners' shares and pending requests, persisted claims
-- tokens, and which grants (RPTs) rest on which share.
CREATE TABLE uma_resources (
	id          TEXT    NOT NULL PRIMARY KEY,
	owner_id    TEXT    NOT NULL,
	client_id   TEXT    NOT NULL,
	name        TEXT    NOT NULL,
	type        TEXT    NOT NULL DEFAULT '',
	icon_uri    TEXT    NOT NULL DEFAULT '',
	description TEXT    NOT NULL DEFAULT '',
	scopes      TEXT    NOT NULL DEFAULT '[]',
	created     INTEGER NOT NULL,
	modified    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uma_resources_owner ON uma_resources (owner_id);
CREATE INDEX uma_resources_client ON uma_resources (client_id);

CREATE TABLE uma_tickets (
	hash        BLOB    NOT NULL PRIMARY KEY,
	client_id   TEXT    NOT NULL,
	requester   TEXT    NOT NULL DEFAULT '',
	permissions TEXT    NOT NULL,
	created     INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	used_at     INTEGER
) WITHOUT ROWID;

CREATE TABLE uma_shares (
	id           TEXT    NOT NULL PRIMARY KEY,
	resource_id  TEXT    NOT NULL,
	owner_id     TEXT    NOT NULL,
	grantee_kind TEXT    NOT NULL,
	grantee_id   TEXT    NOT NULL,
	scopes       TEXT    NOT NULL DEFAULT '[]',
	expires_at   INTEGER,
	created      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uma_shares_resource ON uma_shares (resource_id);
CREATE INDEX uma_shares_owner ON uma_shares (owner_id);
CREATE INDEX uma_shares_grantee ON uma_shares (grantee_id);

CREATE TABLE uma_requests (
	id           TEXT    NOT NULL PRIMARY KEY,
	resource_id  TEXT    NOT NULL,
	owner_id     TEXT    NOT NULL,
	requester_id TEXT    NOT NULL,
	client_id    TEXT    NOT NULL,
	scopes       TEXT    NOT NULL DEFAULT '[]',
	status       TEXT    NOT NULL,
	created      INTEGER NOT NULL,
	decided      INTEGER
) WITHOUT ROWID;
CREATE INDEX uma_requests_owner ON uma_requests (owner_id);
CREATE INDEX uma_requests_requester ON uma_requests (requester_id);

CREATE TABLE uma_pcts (
	hash       BLOB    NOT NULL PRIMARY KEY,
	client_id  TEXT    NOT NULL,
	user_id    TEXT    NOT NULL,
	created    INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE uma_grant_shares (
	grant_id TEXT NOT NULL,
	share_id TEXT NOT NULL,
	PRIMARY KEY (share_id, grant_id)
) WITHOUT ROWID;
