-- A generation whose user already runs USER_MAX_RUNNING others waits here, out of the
-- queue, until one of them ends (the worker that ends it dispatches the oldest parked
-- one; the scheduler's sweep is the safety net). NULL: not parked.
ALTER TABLE generations ADD COLUMN parked_at BIGINT;
CREATE INDEX generations_parked_idx ON generations (user_id, created_at) WHERE parked_at IS NOT NULL;
-- The claim counts each user's running generations.
CREATE INDEX generations_running_idx ON generations (user_id) WHERE status IN ('starting', 'processing');
