//! Receiving privacy requests: the row (at most one open request of each kind per user),
//! its audit entry, and the job. A deletion also ends the account's use at once, in the
//! same transaction (`Db::request_account_deletion`).

use crate::db::{AccountClosed, DbError, NewPrivacyRequest, PrivacyRequestRow, RequestOutcome, UserRow};
use crate::domain::PrivacyKind;
use crate::errors::error_chain;
use crate::ids::PrivacyRequestId;
use crate::privacy::audit::{self, AuditAction};
use crate::services::Services;
use crate::time::{Millis, one_month_after};

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("database error in a privacy request")]
    Db(#[from] DbError),
    #[error("object store error in a privacy request")]
    Storage(#[from] crate::storage::StorageError),
    #[error("writing the export failed")]
    Write(#[from] crate::objects::ObjectWriteError),
    #[error("the export could not be built")]
    Archive(#[from] crate::privacy::archive::ArchiveError),
    #[error("a profile field could not be opened")]
    Seal(#[from] crate::sealing::SealError),
    #[error("the export's archive was purged before it was recorded")]
    ArchiveGone,
    #[error("the object store refused to delete {remaining} of the user's objects")]
    ObjectsRemain { remaining: usize },
    #[error("making the webhook event failed")]
    Webhook(#[from] crate::webhooks::WebhookError),
}

impl PrivacyError {
    /// Whether trying again later can succeed (an outage) rather than never (data the
    /// job cannot read, such as a profile sealed under a key the ring no longer has).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, PrivacyError::Seal(_))
    }
}

fn new_request<'a>(
    id: &'a PrivacyRequestId,
    user: &'a UserRow,
    kind: PrivacyKind,
    now: Millis,
) -> NewPrivacyRequest<'a> {
    NewPrivacyRequest { id: id.as_str(), user_id: &user.id, kind, due_at: one_month_after(now) }
}

fn received_entry(
    services: &Services,
    user: &UserRow,
    id: &PrivacyRequestId,
    kind: PrivacyKind,
    now: Millis,
) -> crate::db::AuditRow {
    let detail = serde_json::json!({ "request": id.as_str(), "kind": kind.as_str() });
    audit::entry(services.accounts.keyring(), &user.id, AuditAction::RequestReceived, detail, now)
}

/// Records an access export request (or finds the open one) and queues its job.
pub async fn request_export(services: &Services, user: &UserRow, now: Millis) -> Result<RequestOutcome, PrivacyError> {
    let id = PrivacyRequestId::generate();
    let entry = received_entry(services, user, &id, PrivacyKind::Export, now);
    let outcome =
        services.db.create_privacy_request(&new_request(&id, user, PrivacyKind::Export, now), &entry, now).await?;
    if let RequestOutcome::Created(row) = &outcome {
        dispatch(services, row, "received").await;
    }
    Ok(outcome)
}

/// Records the account's deletion and ends its use at once (sessions, tokens, sign-in,
/// webhooks, unfinished generations), then queues the job that removes its data.
pub async fn request_deletion(
    services: &Services,
    user: &UserRow,
    now: Millis,
) -> Result<(RequestOutcome, AccountClosed), PrivacyError> {
    let id = PrivacyRequestId::generate();
    let entry = received_entry(services, user, &id, PrivacyKind::Deletion, now);
    let new = new_request(&id, user, PrivacyKind::Deletion, now);
    let (outcome, closed) = services.db.request_account_deletion(&new, &entry, now).await?;
    // Streams watching a canceled generation end now (their owner cannot see them anyway).
    for generation in &closed.generations_canceled {
        services.changes.publish(generation).await;
    }
    dispatch(services, outcome.row(), "received").await;
    Ok((outcome, closed))
}

/// Queues the request's job. A failed push is logged: the scheduler dispatches open
/// requests nobody works on again.
pub async fn dispatch(services: &Services, row: &PrivacyRequestRow, key: &str) {
    if let Err(error) = services.queue.dispatch_privacy(&row.id, key).await {
        tracing::warn!(privacy.request = %row.id, error = %error_chain(&error), "could not queue a privacy request; the scheduler will");
    }
}
