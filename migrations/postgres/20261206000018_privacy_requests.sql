-- Privacy rights as jobs: stored_objects.kind gains 'export' (an access export's
-- archive, under the user's prefix, purged after EXPORT_TTL).
ALTER TABLE stored_objects DROP CONSTRAINT stored_objects_kind_check;
ALTER TABLE stored_objects ADD CONSTRAINT stored_objects_kind_check
    CHECK (kind IN ('upload', 'output', 'gallery', 'picture', 'export'));

-- Privacy requests (access export, account deletion), each carried out by a queue job
-- in checkpointed steps (`step` names the last one finished, so a crashed job resumes
-- there). At most one open request of each kind per user. A deletion removes the
-- user's requests with the rest; its receipt is kept in the audit log, under the
-- user's pseudonym.
CREATE TABLE privacy_requests (
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
CREATE UNIQUE INDEX privacy_requests_one_open_key ON privacy_requests (user_id, kind)
    WHERE status IN ('received', 'in_progress');
CREATE INDEX privacy_requests_user_idx ON privacy_requests (user_id, created_at);
CREATE INDEX privacy_requests_open_idx ON privacy_requests (status, updated_at);
