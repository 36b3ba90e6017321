-- Recent events of the processes sharing this database file (events.StartLogRelay):
-- each process appends what it publishes and reads what the others appended, so a
-- CLI command's revocation reaches the running server. Rows live for minutes
-- (PurgeExpired). PostgreSQL carries events with NOTIFY instead.
CREATE TABLE event_log (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    created INTEGER NOT NULL,
    payload TEXT    NOT NULL
);
CREATE INDEX event_log_created ON event_log (created);
