-- `/metrics` sums the credits held at each scrape: only accounts holding some are read.
CREATE INDEX users_credits_held_idx ON users (credits_held) WHERE credits_held > 0;
