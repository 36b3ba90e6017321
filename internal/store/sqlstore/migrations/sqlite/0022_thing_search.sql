-- The admin console's things search (issue 15) filters by model, status or
-- both and pages sorted by serial number (then id): these indexes give the
-- matches in that order, so a page reads 50 entries instead of sorting
-- every match, and the count walks an index rather than the table
-- (bench/search, docs/performance.md).
CREATE INDEX things_model_serial ON things (model, serial_number, id);
CREATE INDEX things_status_serial ON things (status, serial_number, id);
CREATE INDEX things_model_status_serial ON things (model, status, serial_number, id);
-- Without statistics SQLite takes every equality as equally selective: it
-- counted the active things of one model through the status index (reading
-- twenty times the rows), and paged a model through the model-and-status
-- index with a sort of every match. Fixed statistics for these three
-- (SQLite: "Fixed Results Of ANALYZE") say what is true of any platform:
-- a status has very many things, a model many, a model in one status
-- about half of them. An ANALYZE run later replaces them with measured ones.
ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1 WHERE idx IN ('things_model_serial', 'things_status_serial', 'things_model_status_serial');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
	('things', 'things_model_serial', '1000000 1000 1 1'),
	('things', 'things_status_serial', '1000000 500000 1 1'),
	('things', 'things_model_status_serial', '1000000 1000 500 1 1');
