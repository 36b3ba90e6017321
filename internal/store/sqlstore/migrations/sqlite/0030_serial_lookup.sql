-- An equality on the serial number alone (the directory's
-- (serialNumber=…), SCIM's serialNumber eq) sorted by id, as a page is:
-- with id in the index the matches come in that order, without a sort.
-- Without a statistic for it, SQLite's planner preferred the fixed
-- statistics of 0022's things_status_serial and skip-scanned it, one seek
-- per status; the fixed statistic below says what is true of any platform:
-- a serial number names about one thing. An ANALYZE run later replaces it.
DROP INDEX things_serial_number;
CREATE INDEX things_serial_number ON things (serial_number, id);
ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1 WHERE idx = 'things_serial_number';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('things', 'things_serial_number', '1000000 1 1');
