-- The first slice of the data model. Timestamps are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL,
    name             TEXT NOT NULL,
    picture_url      TEXT,
    preferences      TEXT NOT NULL DEFAULT '{}',
    -- The projection of the credit ledger, updated in the same transaction as each entry.
    credits_balance  BIGINT NOT NULL DEFAULT 0,
    credits_held     BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    CONSTRAINT users_credits_consistent CHECK (credits_held >= 0 AND credits_balance >= credits_held)
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE sessions (
    -- SHA-256 of the cookie value: a database dump holds no usable session.
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Every object written to the object store has a row, inserted before the PUT, so the
-- purge can always find it. Purged objects keep their row (state 'deleted') so that a
-- download answers 410 rather than 404.
CREATE TABLE stored_objects (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('upload', 'output')),
    object_key    TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    bytes         BIGINT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleting', 'deleted')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    deleted_at    BIGINT
);
CREATE UNIQUE INDEX stored_objects_object_key_key ON stored_objects (object_key);
CREATE INDEX stored_objects_due_idx ON stored_objects (state, expires_at);
CREATE INDEX stored_objects_user_id_idx ON stored_objects (user_id);

CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    object_id     TEXT NOT NULL REFERENCES stored_objects (id),
    content_type  TEXT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX uploads_user_id_idx ON uploads (user_id);

CREATE TABLE generations (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind                 TEXT NOT NULL,
    style                TEXT NOT NULL,
    options              TEXT NOT NULL DEFAULT '{}',
    upload_id            TEXT NOT NULL REFERENCES uploads (id),
    status               TEXT NOT NULL CHECK (status IN ('queued', 'starting', 'processing', 'succeeded', 'failed', 'canceled')),
    cost                 BIGINT NOT NULL CHECK (cost > 0),
    charged              BIGINT NOT NULL DEFAULT 0,
    refunded             BIGINT NOT NULL DEFAULT 0,
    attempts             BIGINT NOT NULL DEFAULT 0,
    progress_percent     BIGINT NOT NULL DEFAULT 0,
    progress_stage       TEXT NOT NULL DEFAULT 'queued',
    error_code           TEXT,
    error_message        TEXT,
    error_retryable      BIGINT,
    -- The worker that holds the generation and until when; a lapsed lease may be taken over.
    lease_owner          TEXT,
    lease_until          BIGINT,
    -- A retry waits until then; the stalled-generation sweep leaves it alone before.
    not_before           BIGINT,
    -- The queue task of the latest dispatch, so the sweep can ask the queue about it.
    dispatch_task        TEXT,
    -- Bumped on every change: the ETag of the generation object.
    version              BIGINT NOT NULL DEFAULT 1,
    idempotency_key      TEXT,
    request_fingerprint  TEXT,
    created_at           BIGINT NOT NULL,
    started_at           BIGINT,
    completed_at         BIGINT,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX generations_user_created_idx ON generations (user_id, created_at);
CREATE INDEX generations_status_created_idx ON generations (status, created_at);
CREATE UNIQUE INDEX generations_idempotency_key ON generations (user_id, idempotency_key);

CREATE TABLE generation_outputs (
    id             TEXT PRIMARY KEY,
    generation_id  TEXT NOT NULL REFERENCES generations (id) ON DELETE CASCADE,
    position       BIGINT NOT NULL,
    object_id      TEXT NOT NULL REFERENCES stored_objects (id),
    filename       TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX generation_outputs_position_key ON generation_outputs (generation_id, position);

-- Append-only: entries are never updated or deleted; a correction is a new entry.
CREATE TABLE credit_ledger (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('grant', 'purchase', 'hold', 'charge', 'release', 'refund')),
    amount         BIGINT NOT NULL,
    generation_id  TEXT,
    created_at     BIGINT NOT NULL
);
-- At most one entry of each kind per generation: a job that runs twice charges once.
CREATE UNIQUE INDEX credit_ledger_generation_kind_key ON credit_ledger (generation_id, kind);
CREATE INDEX credit_ledger_user_created_idx ON credit_ledger (user_id, created_at);

-- Single-flight for periodic work shared by several scheduler processes.
CREATE TABLE scheduler_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
