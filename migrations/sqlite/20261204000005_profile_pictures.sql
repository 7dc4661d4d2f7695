-- no-transaction
-- Profile pictures are our own objects (fetched once at sign-in), so no page makes a
-- browser contact the identity provider: stored_objects.kind gains 'picture', and the
-- user row names its current picture. The table is rebuilt as in the gallery
-- migration (SQLite cannot alter a CHECK constraint); every statement can run again.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP TABLE IF EXISTS stored_objects_new;
CREATE TABLE stored_objects_new (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('upload', 'output', 'gallery', 'picture')),
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
COMMIT;
PRAGMA foreign_keys = ON;
