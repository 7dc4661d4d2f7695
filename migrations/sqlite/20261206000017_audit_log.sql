-- The append-only audit log of privacy operations. `subject` is a pseudonym of the
-- user (a keyed hash of the user id), never a name, address or token. Rows cannot be
-- changed, and can be deleted only once `retain_until` has passed (the scheduler's
-- retention): the triggers refuse anything else, whatever the application asks.
CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    subject       TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    retain_until  BIGINT NOT NULL
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, created_at);
CREATE INDEX audit_log_retain_until_idx ON audit_log (retain_until);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be changed');
END;
CREATE TRIGGER audit_log_no_early_delete BEFORE DELETE ON audit_log
WHEN OLD.retain_until > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: a row can be deleted only after its retention period');
END;
