-- Set when the account's deletion was requested: from then on it cannot sign in or act
-- (its sessions and tokens are gone, its blind indexes cleared), and the deletion job
-- removes the row.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
