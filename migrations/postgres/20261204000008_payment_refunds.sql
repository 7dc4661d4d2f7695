-- Refunds of a purchase take its credits back as far as the balance allows: what was
-- refunded (minor units), the credits taken back, and those that could not be (already
-- spent) are kept on the payment.
ALTER TABLE payments ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN credits_revoked BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN credits_unrecovered BIGINT NOT NULL DEFAULT 0;
CREATE INDEX payments_payment_intent_idx ON payments (payment_intent_id);
