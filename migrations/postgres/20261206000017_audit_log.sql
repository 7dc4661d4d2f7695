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

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'audit_log is append-only: rows cannot be changed';
    END IF;
    IF OLD.retain_until > (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
        RAISE EXCEPTION 'audit_log is append-only: a row can be deleted only after its retention period';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_early_delete BEFORE DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
