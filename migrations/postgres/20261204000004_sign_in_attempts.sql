-- A Google sign-in in progress: what the callback must match (`state`), the ID
-- token's expected `nonce` and the PKCE verifier, under the hash of the random id in
-- the browser's short-lived sign-in cookie. Taken (deleted) by the callback, so each
-- is used once; the scheduler removes the abandoned ones.
CREATE TABLE sign_in_attempts (
    id_hash        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX sign_in_attempts_expires_at_idx ON sign_in_attempts (expires_at);
