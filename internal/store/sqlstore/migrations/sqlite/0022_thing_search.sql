-- The admin console's things search (issue 15) filters by model or status
-- and pages sorted by serial number (then id): these indexes give the
-- matches in that order, so a page reads 50 entries instead of sorting
-- every match, and the count walks an index rather than the table
-- (bench/search, docs/performance.md).
CREATE INDEX things_model_serial ON things (model, serial_number, id);
CREATE INDEX things_status_serial ON things (status, serial_number, id);
