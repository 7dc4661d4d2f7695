-- The id of the API request that created the generation (`X-Request-Id`, given or
-- made), so the worker's and the webhook deliveries' log lines carry it too.
ALTER TABLE generations ADD COLUMN request_id TEXT;
