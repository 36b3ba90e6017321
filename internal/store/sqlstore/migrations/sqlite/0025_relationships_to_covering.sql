-- The owners of a page of things (the directory's owner attribute, SCIM's
-- owners) are read by (to_kind, to_id, kind). Without created in the
-- index, SQLite's planner, which has no statistics, preferred scanning
-- every relationship of the kind through the primary key: one read per
-- page cost as many rows as there are things. With created the index
-- covers those reads.
DROP INDEX relationships_to;
CREATE INDEX relationships_to ON relationships (to_kind, to_id, kind, created);
