//! The account's deletion, after the API ended its use (sessions and tokens revoked,
//! blind indexes cleared, unfinished generations canceled with their credits given back):
//!
//! 1. `objects_deleted`: every object under the user's prefix `u/{user}/` is deleted from
//!    the store (listed from the store itself, so an object whose row was lost goes too),
//!    and their rows marked deleted. The count is kept in the request's receipt.
//! 2. `completed`: in one transaction, payment records are detached, every row the
//!    inventory marks for deletion is deleted (the request's own row with them), and the
//!    receipt is written to the audit log under the user's pseudonym.
//!
//! Each step is idempotent and checkpointed: a job that dies resumes after the last step
//! recorded, and a request already carried out finds nothing left to do.

use crate::db::PrivacyRequestRow;
use crate::privacy::audit::{self, AUDIT_RETENTION_DAYS, AuditAction};
use crate::privacy::inventory::{Deletion, PAYMENT_RETENTION_DAYS};
use crate::privacy::requests::PrivacyError;
use crate::services::Services;
use crate::time::{Millis, now_ms, rfc3339};

/// The step after which objects are gone.
pub const OBJECTS_DELETED: &str = "objects_deleted";
/// Keys deleted per call to the store (S3's limit for one `DeleteObjects`).
const DELETE_BATCH: usize = 1_000;

/// What the job did this time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionProgress {
    /// Every step is done (now or earlier).
    Completed,
    /// Another job took the request over (this one's lease lapsed).
    LeaseLost,
}

/// Carries out the deletion from the step after `request.step`, as lease holder `owner`.
pub async fn carry_out(
    services: &Services,
    request: &PrivacyRequestRow,
    owner: &str,
) -> Result<DeletionProgress, PrivacyError> {
    let user = request.user_id.as_str();
    let keyring = services.accounts.keyring();
    let mut receipt: serde_json::Value =
        request.receipt.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_else(|| serde_json::json!({}));
    if request.step != OBJECTS_DELETED {
        let removed = delete_objects(services, user).await?;
        receipt["objects_removed"] = removed.into();
        let now = now_ms();
        let entry = audit::entry(
            keyring,
            user,
            AuditAction::StepDone,
            serde_json::json!({ "request": request.id, "step": OBJECTS_DELETED, "objects_removed": removed }),
            now,
        );
        let recorded = services
            .db
            .checkpoint_privacy_request(&request.id, owner, OBJECTS_DELETED, Some(&receipt.to_string()), &entry, now)
            .await?;
        if !recorded {
            return Ok(DeletionProgress::LeaseLost);
        }
        tracing::info!(privacy.request = %request.id, objects = removed, "deletion: objects removed");
    }
    // Objects a writer that started before the account closed (a running generation or
    // export) finished since the first step: gone too, before their rows.
    let late = delete_objects(services, user).await?;
    let now = now_ms();
    let objects_removed = receipt["objects_removed"].as_u64().unwrap_or(0) + late;
    let removed = services
        .db
        .delete_user_rows(user, |removed, detached| {
            let detail = receipt_detail(&request.id, objects_removed, removed, detached, now);
            audit::entry(keyring, user, AuditAction::DeletionCompleted, detail, now)
        })
        .await?;
    match removed {
        Some(removed) => {
            let rows: u64 = removed.iter().map(|(_, n)| n).sum();
            tracing::info!(privacy.request = %request.id, rows, objects = objects_removed, "deletion completed");
        }
        None => tracing::info!(privacy.request = %request.id, "deletion already completed"),
    }
    // With the account's row gone no object of it can be recorded any more (a row comes
    // before its bytes, and needs the account), but bytes of a row recorded just before
    // may still land: one last look. What it misses, the object walk removes.
    if let Err(error) = delete_objects(services, user).await {
        tracing::warn!(privacy.request = %request.id, error = %crate::errors::error_chain(&error), "the last look under the prefix failed; the object walk will remove what is left");
    }
    Ok(DeletionProgress::Completed)
}

/// Deletes every object under the user's prefix, listing the store until it holds none;
/// returns how many were deleted. Deleting a missing key succeeds, so a second run is
/// harmless.
async fn delete_objects(services: &Services, user: &str) -> Result<u64, PrivacyError> {
    let prefix = format!("u/{user}/");
    // Parts of uploads a killed process left (no object listing shows them). The
    // in-process server keeps none reachable and refuses the listing: nothing to do.
    match services.store.abort_uploads_under(&prefix).await {
        Ok(0) => {}
        Ok(aborted) => tracing::info!(aborted, "deletion: unfinished uploads aborted"),
        Err(error) => tracing::debug!(error = %crate::errors::error_chain(&error), "no multipart uploads listed"),
    }
    let mut removed = 0;
    loop {
        let keys = services.store.list(&prefix).await?;
        if keys.is_empty() {
            break;
        }
        let mut deleted_now = 0;
        for batch in keys.chunks(DELETE_BATCH) {
            let deleted = services.store.delete_many(batch).await?;
            deleted_now += deleted.len() as u64;
        }
        removed += deleted_now;
        if deleted_now == 0 {
            return Err(PrivacyError::ObjectsRemain { remaining: keys.len() });
        }
    }
    services.db.mark_user_objects_deleted(user, now_ms()).await?;
    // The object walk's cursor may name a key of the user's: it starts over instead.
    services.db.reset_maintenance_cursors_under(&prefix, now_ms()).await?;
    Ok(removed)
}

/// The receipt: what was removed and what was kept, until when and why. It names the
/// request and counts, never the person (the audit entry carries the pseudonym).
fn receipt_detail(
    request: &str,
    objects_removed: u64,
    removed: &[(&'static str, u64)],
    detached: u64,
    now: Millis,
) -> serde_json::Value {
    let rows: serde_json::Map<String, serde_json::Value> =
        removed.iter().filter(|(_, n)| *n > 0).map(|(t, n)| ((*t).to_owned(), (*n).into())).collect();
    let payment_reason = match crate::privacy::inventory::table("payments").map(|t| t.deletion) {
        Some(Deletion::Detach { reason, .. }) => reason,
        _ => "",
    };
    serde_json::json!({
        "request": request,
        "objects_removed": objects_removed,
        "rows_removed": rows,
        "retained": [
            {
                "what": "payment records, detached from the account (no user id, name or e-mail on them)",
                "records": detached,
                "until": format!("{PAYMENT_RETENTION_DAYS} days after each payment"),
                "why": payment_reason,
            },
            {
                "what": "the audit log's entries about the account, under a pseudonym",
                "until": rfc3339(now + i64::from(AUDIT_RETENTION_DAYS) * 86_400_000),
                "why": "accountability: a record that privacy requests were received and carried out",
            },
        ],
    })
}
