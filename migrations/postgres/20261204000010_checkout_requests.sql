-- `Idempotency-Key` on `POST /v1/checkout`: the first request with a key claims it
-- (session columns NULL while Stripe is asked), then records the session it opened so
-- a retry gets the same answer. Kept 24 hours, then deleted by the scheduler.
CREATE TABLE checkout_requests (
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key      TEXT NOT NULL,
    request_fingerprint  TEXT NOT NULL,
    session_id           TEXT,
    checkout_url         TEXT,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX checkout_requests_created_idx ON checkout_requests (created_at);

-- What each daily reconciliation found: balances that differ from their ledger, and
-- paid Checkout Sessions no event had applied; kept so monitoring can read the newest.
CREATE TABLE reconciliation_runs (
    id                   TEXT PRIMARY KEY,
    ran_at               BIGINT NOT NULL,
    users_checked        BIGINT NOT NULL,
    balance_differences  BIGINT NOT NULL,
    sessions_checked     BIGINT NOT NULL,
    sessions_applied     BIGINT NOT NULL,
    stripe_error         TEXT
);
CREATE INDEX reconciliation_runs_ran_at_idx ON reconciliation_runs (ran_at);
