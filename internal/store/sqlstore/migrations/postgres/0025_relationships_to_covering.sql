-- The owners of a page of things are read by (to_kind, to_id, kind); with
-- created too (SQLite needs it to choose the index at all, see its 0025)
-- the index answers those reads without visiting the table.
DROP INDEX relationships_to;
CREATE INDEX relationships_to ON relationships (to_kind, to_id, kind, created);
