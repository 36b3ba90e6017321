-- Reading the audit log (GET /api/v1/admin/audit, thingid audit) by actor,
-- action (exactly or by prefix: one range of the index), subject of any kind
-- and time; each index ends in seq, the order records are read in. Actor and
-- action are compared in byte order (COLLATE "C", as sqlstore's binaryOrder
-- writes them), so that a prefix range means the same as on SQLite whatever
-- the database's locale, and the index serves it.
CREATE INDEX audit_actor ON audit (actor COLLATE "C", seq);
CREATE INDEX audit_action ON audit (action COLLATE "C", seq);
CREATE INDEX audit_target_id ON audit (target_id, seq);
CREATE INDEX audit_time ON audit (time, seq);
