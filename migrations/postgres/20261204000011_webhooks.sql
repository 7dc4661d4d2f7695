-- Webhooks sent by the platform (Standard Webhooks).
--
-- How far each generation's events have been announced to subscribers: 0 nothing,
-- 1 `generation.started`, 2 its terminal event; and when its last progress event was
-- made (at most one per 500 ms). The scheduler announces what a crashed process did not.
ALTER TABLE generations ADD COLUMN webhook_stage BIGINT NOT NULL DEFAULT 0;
ALTER TABLE generations ADD COLUMN webhook_progress_at BIGINT NOT NULL DEFAULT 0;
UPDATE generations SET webhook_stage = 2 WHERE status IN ('succeeded', 'failed', 'canceled');
UPDATE generations SET webhook_stage = 1 WHERE status IN ('starting', 'processing');
CREATE INDEX generations_unannounced_idx ON generations (updated_at) WHERE webhook_stage < 2;

-- The account's secret for per-generation webhooks: one current (expires_at NULL) and,
-- after a rotation, the previous ones until their overlap ends. Sealed.
CREATE TABLE webhook_secrets (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE UNIQUE INDEX webhook_secrets_current_idx ON webhook_secrets (user_id) WHERE expires_at IS NULL;

-- Where deliveries go. `account` endpoints are registered with their own events and
-- secret (sealed); a `generation` endpoint is a per-generation `webhook` URL (one row
-- per user and URL, signed with the account's secrets, never listed).
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    url              TEXT NOT NULL,
    events           TEXT NOT NULL,
    secret           TEXT,
    enabled          BIGINT NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    disabled_at      BIGINT,
    failing_since    BIGINT,
    last_success_at  BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_user_idx ON webhook_endpoints (user_id, created_at);
CREATE UNIQUE INDEX webhook_endpoints_generation_url_idx ON webhook_endpoints (user_id, url) WHERE kind = 'generation';

-- Which events of a generation go to its own `webhook` (started, progress, completed).
CREATE TABLE generation_webhooks (
    generation_id  TEXT PRIMARY KEY REFERENCES generations (id) ON DELETE CASCADE,
    endpoint_id    TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    events         TEXT NOT NULL
);
CREATE INDEX generation_webhooks_endpoint_idx ON generation_webhooks (endpoint_id);

-- One message to one endpoint; its id is the `webhook-id`, its body fixed when made,
-- so every attempt sends the same bytes. Purged 30 days after it was made.
CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,
    endpoint_id       TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    generation_id     TEXT,
    event_type        TEXT NOT NULL,
    body              TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    manual            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT,
    lease_until       BIGINT,
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    completed_at      BIGINT
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);

-- Every attempt of a delivery: when, how long, what came back (an excerpt).
CREATE TABLE webhook_attempts (
    delivery_id       TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt           BIGINT NOT NULL,
    started_at        BIGINT NOT NULL,
    duration_ms       BIGINT NOT NULL,
    status_code       BIGINT,
    error             TEXT,
    response_excerpt  TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
