-- Reading the audit log (GET /api/v1/admin/audit, thingid audit) by actor,
-- action (exactly or by prefix: one range of the index) and subject, of one
-- kind or of any; each index ends in seq, the order records are read in.
-- The subject's index leads with the id, which serves both (it replaces
-- audit_target, which led with the kind). Actor and action are compared in
-- byte order (COLLATE "C", as sqlstore's binaryOrder writes them), so that a
-- prefix range means the same as on SQLite whatever the database's locale,
-- and the index serves it. Time has no index of its own: a
-- window far back is reached by scanning back from the newest record (the
-- plan PostgreSQL chose even with an index on time), and one index more on
-- every append, a million for an import, cost more than it saved.
DROP INDEX audit_target;
CREATE INDEX audit_subject ON audit (target_id, target_kind, seq);
CREATE INDEX audit_actor ON audit (actor COLLATE "C", seq);
CREATE INDEX audit_action ON audit (action COLLATE "C", seq);
