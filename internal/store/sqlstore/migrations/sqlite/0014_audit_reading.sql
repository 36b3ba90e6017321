-- Reading the audit log (GET /api/v1/admin/audit, thingid audit) by actor,
-- action (exactly or by prefix: one range of the index), subject of any kind
-- and time; each index ends in seq, the order records are read in.
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_action ON audit (action, seq);
CREATE INDEX audit_target_id ON audit (target_id, seq);
CREATE INDEX audit_time ON audit (time, seq);
