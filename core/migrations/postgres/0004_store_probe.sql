-- One row the writer updates and commits after a fault (a full disk, a
-- failed sync) to prove that writes reach the disk again before it accepts
-- changes.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY,
    written_ms BIGINT NOT NULL
);
INSERT INTO store_probe (id, written_ms) VALUES (1, 0);
