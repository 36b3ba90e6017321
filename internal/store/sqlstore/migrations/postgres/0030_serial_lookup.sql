-- An equality on the serial number alone, sorted by id as a page is (in
-- byte order, as the store sorts), reads the matches in that order (see
-- SQLite's 0030).
DROP INDEX things_serial_number;
CREATE INDEX things_serial_number ON things (serial_number, id COLLATE "C");
