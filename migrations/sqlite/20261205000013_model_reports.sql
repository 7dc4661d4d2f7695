-- Availability is reported per worker: a worker that cannot reach the model servers
-- must not hide the ones the others see. A style can run when any fresh report says so.
DROP TABLE model_availability;
CREATE TABLE model_availability (
    kind        TEXT NOT NULL,
    style       TEXT NOT NULL,
    reporter    TEXT NOT NULL,
    available   BIGINT NOT NULL,
    detail      TEXT NOT NULL,
    checked_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, style, reporter)
);
CREATE INDEX model_availability_checked_idx ON model_availability (checked_at);

-- The remote provider's prediction an attempt was following (its id at the provider),
-- recorded as soon as it was created: an attempt after a crashed or abandoned one
-- follows it again instead of paying for a second prediction.
ALTER TABLE generations ADD COLUMN model_prediction TEXT;
