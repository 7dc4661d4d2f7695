-- no-transaction
-- The gallery: copies of generated files a user chose to keep until they delete them.
--
-- stored_objects.kind gains 'gallery'. SQLite cannot alter a CHECK constraint, so the
-- table is rebuilt the way SQLite documents (create, copy, drop, rename), which needs
-- foreign keys off; that pragma has no effect inside a transaction, so this migration
-- runs outside sqlx's and opens its own. Rows keep their ids, so every reference from
-- uploads and generation_outputs still resolves. Every statement can run again, so a
-- crash between this file's COMMIT and sqlx recording it is repaired by a re-run.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP TABLE IF EXISTS stored_objects_new;
CREATE TABLE stored_objects_new (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('upload', 'output', 'gallery')),
    object_key    TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    bytes         BIGINT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleting', 'deleted')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    deleted_at    BIGINT
);
INSERT INTO stored_objects_new (id, user_id, kind, object_key, content_type, bytes, state, created_at, expires_at, deleted_at)
    SELECT id, user_id, kind, object_key, content_type, bytes, state, created_at, expires_at, deleted_at
    FROM stored_objects;
DROP TABLE stored_objects;
ALTER TABLE stored_objects_new RENAME TO stored_objects;
CREATE UNIQUE INDEX IF NOT EXISTS stored_objects_object_key_key ON stored_objects (object_key);
CREATE INDEX IF NOT EXISTS stored_objects_due_idx ON stored_objects (state, expires_at);
CREATE INDEX IF NOT EXISTS stored_objects_user_id_idx ON stored_objects (user_id);

CREATE TABLE IF NOT EXISTS gallery_items (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The generation and output the item was saved from; the generation's own files
    -- may be purged later, the item stays.
    generation_id     TEXT NOT NULL,
    source_output_id  TEXT NOT NULL,
    object_id         TEXT NOT NULL REFERENCES stored_objects (id),
    kind              TEXT NOT NULL,
    style             TEXT NOT NULL,
    filename          TEXT NOT NULL,
    content_type      TEXT NOT NULL,
    bytes             BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
-- Saving the same output twice keeps one item.
CREATE UNIQUE INDEX IF NOT EXISTS gallery_items_source_key ON gallery_items (user_id, source_output_id);
CREATE INDEX IF NOT EXISTS gallery_items_user_created_idx ON gallery_items (user_id, created_at);
COMMIT;
PRAGMA foreign_keys = ON;
