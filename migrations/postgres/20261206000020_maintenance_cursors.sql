-- Where a resumable maintenance walk stopped, by walk name: the scheduler's walk over
-- the object store keeps the last object key it handled here, so a restart or another
-- scheduler goes on from there. One row per walk.
CREATE TABLE maintenance_cursors (
    name        TEXT PRIMARY KEY,
    cursor      TEXT,
    updated_at  BIGINT NOT NULL
);
-- The walk compares object keys in the order the object store lists them (bytes, as
-- S3 does), whatever the database's collation: its range queries use COLLATE "C",
-- which this index serves.
CREATE INDEX stored_objects_key_bytes_idx ON stored_objects (object_key COLLATE "C");
-- The retention of the scheduler's tick: payment records past their legal period, and
-- generation Idempotency-Keys older than a day (only rows that still have one).
CREATE INDEX payments_created_idx ON payments (created_at);
CREATE INDEX generations_idempotency_created_idx ON generations (created_at) WHERE idempotency_key IS NOT NULL;
