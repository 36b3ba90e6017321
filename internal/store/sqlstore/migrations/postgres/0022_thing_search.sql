-- The admin console's things search (issue 15) filters by model, status or
-- both and pages sorted by serial number (then id), in byte order (COLLATE
-- "C", as sqlstore's binaryOrder writes the sort): these indexes give the
-- matches in that order, so a page reads 50 entries instead of sorting
-- every match (bench/search, docs/performance.md). PostgreSQL's autovacuum
-- keeps the statistics that choose among them.
CREATE INDEX things_model_serial ON things (model, serial_number COLLATE "C", id);
CREATE INDEX things_status_serial ON things (status, serial_number COLLATE "C", id);
CREATE INDEX things_model_status_serial ON things (model, status, serial_number COLLATE "C", id);
