//! The audit log of privacy operations: what happened to whose data, under a pseudonym
//! (a keyed hash of the user id, so an entry outlives the account without naming it),
//! never with tokens, e-mails or names. Rows are append-only (triggers in both
//! backends); only the retention deletes them, after `AUDIT_RETENTION_DAYS`.

use crate::db::AuditRow;
use crate::sealing::{IndexPurpose, Keyring};
use crate::time::Millis;

/// How long an entry is kept: three years, the usual limitation period for claims
/// about how a request was handled.
pub const AUDIT_RETENTION_DAYS: u32 = 1_095;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    RequestReceived,
    StepDone,
    ExportDownloaded,
    DeletionCompleted,
    RequestFailed,
    CorrectionMade,
    PolicyAccepted,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::RequestReceived => "request_received",
            AuditAction::StepDone => "step_done",
            AuditAction::ExportDownloaded => "export_downloaded",
            AuditAction::DeletionCompleted => "deletion_completed",
            AuditAction::RequestFailed => "request_failed",
            AuditAction::CorrectionMade => "correction_made",
            AuditAction::PolicyAccepted => "policy_accepted",
        }
    }
}

/// The pseudonym entries name a user by (under the ring's newest key).
pub fn subject(keyring: &Keyring, user_id: &str) -> String {
    keyring.index(IndexPurpose::AuditSubject, user_id)
}

/// Every pseudonym the user may have been recorded under (one per key of the ring).
pub fn subjects(keyring: &Keyring, user_id: &str) -> Vec<String> {
    keyring.indexes(IndexPurpose::AuditSubject, user_id)
}

/// An entry about `user_id`, for the transaction of the change it records (the change
/// and its entry commit together). `detail` must name no person: field names, a policy
/// version, a request's id.
pub fn entry(
    keyring: &Keyring,
    user_id: &str,
    action: AuditAction,
    detail: serde_json::Value,
    now: Millis,
) -> AuditRow {
    AuditRow {
        id: format!("aud_{}", ulid::Ulid::generate().to_string().to_ascii_lowercase()),
        subject: subject(keyring, user_id),
        action: action.as_str().to_owned(),
        detail: detail.to_string(),
        created_at: now,
        retain_until: now + i64::from(AUDIT_RETENTION_DAYS) * 86_400_000,
    }
}
