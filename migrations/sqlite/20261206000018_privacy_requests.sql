-- no-transaction
-- Privacy rights as jobs: stored_objects.kind gains 'export' (an access export's
-- archive, under the user's prefix, purged after EXPORT_TTL). The table is rebuilt as
-- in the gallery migration (SQLite cannot alter a CHECK constraint); every statement
-- can run again.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DROP TABLE IF EXISTS stored_objects_new;
CREATE TABLE stored_objects_new (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('upload', 'output', 'gallery', 'picture', 'export')),
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

-- Privacy requests (access export, account deletion), each carried out by a queue job
-- in checkpointed steps (`step` names the last one finished, so a crashed job resumes
-- there). At most one open request of each kind per user. A deletion removes the
-- user's requests with the rest; its receipt is kept in the audit log, under the
-- user's pseudonym.
CREATE TABLE IF NOT EXISTS privacy_requests (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('export', 'deletion')),
    status        TEXT NOT NULL CHECK (status IN ('received', 'in_progress', 'completed', 'failed')),
    step          TEXT NOT NULL DEFAULT 'received',
    attempts      BIGINT NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   BIGINT,
    error_code    TEXT,
    object_id     TEXT REFERENCES stored_objects (id) ON DELETE SET NULL,
    receipt       TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    completed_at  BIGINT,
    expires_at    BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS privacy_requests_one_open_key ON privacy_requests (user_id, kind)
    WHERE status IN ('received', 'in_progress');
CREATE INDEX IF NOT EXISTS privacy_requests_user_idx ON privacy_requests (user_id, created_at);
CREATE INDEX IF NOT EXISTS privacy_requests_open_idx ON privacy_requests (status, updated_at);
COMMIT;
PRAGMA foreign_keys = ON;
