-- Versions of the privacy policy, published by an operator (`petportrait policy
-- publish`) with the date they take effect; the one in force is the newest whose date
-- has come. The first version is the policy the service launched with.
CREATE TABLE policy_versions (
    version       TEXT PRIMARY KEY,
    effective_at  BIGINT NOT NULL,
    url           TEXT NOT NULL,
    published_at  BIGINT NOT NULL
);
CREATE INDEX policy_versions_effective_at_idx ON policy_versions (effective_at);
INSERT INTO policy_versions (version, effective_at, url, published_at)
VALUES ('2026-11-29', 1795910400000, '/privacy', 1795910400000);

-- Which version each user accepted, and when.
CREATE TABLE policy_acceptances (
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version      TEXT NOT NULL REFERENCES policy_versions (version),
    accepted_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, version)
);

-- Set when the user corrects their name: a later sign-in no longer overwrites it with
-- the identity provider's.
ALTER TABLE users ADD COLUMN name_edited_at BIGINT;
