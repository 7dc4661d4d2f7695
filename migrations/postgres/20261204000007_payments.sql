-- Purchases of credit packs through Stripe Checkout: one row per Checkout Session that
-- was paid, never card data. `user_id` is detached (set to NULL) when the account is
-- deleted: the record itself is kept for the legal retention period.
CREATE TABLE payments (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT REFERENCES users (id) ON DELETE SET NULL,
    pack_id              TEXT NOT NULL,
    credits              BIGINT NOT NULL,
    amount               BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    checkout_session_id  TEXT NOT NULL,
    payment_intent_id    TEXT,
    status               TEXT NOT NULL CHECK (status IN ('paid', 'refunded', 'partially_refunded')),
    created_at           BIGINT NOT NULL
);
-- A session is fulfilled once, however many events announce it.
CREATE UNIQUE INDEX payments_checkout_session_key ON payments (checkout_session_id);
CREATE INDEX payments_user_created_idx ON payments (user_id, created_at);

-- Every Stripe event applied, by its id: a redelivered event is recognised and skipped.
CREATE TABLE stripe_events (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
