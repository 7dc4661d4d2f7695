//! The privacy job: claims a request under a lease in its row (one job at a time), then
//! carries out the export or the deletion from its last checkpoint. Idempotent: a job
//! for a request that ended, or that another job holds, does nothing; one whose lease
//! lapsed stops at its next checkpoint.

use std::sync::Arc;
use std::time::Duration;

use petportrait_core::db::{CompletedExport, ExportCompletion, PrivacyClaim, PrivacyRequestRow};
use petportrait_core::domain::{EventType, PrivacyKind, PrivacyStatus};
use petportrait_core::errors::error_chain;
use petportrait_core::ids::PrivacyRequestId;
use petportrait_core::privacy::audit::{self, AuditAction};
use petportrait_core::privacy::deletion::{self, DeletionProgress};
use petportrait_core::privacy::export;
use petportrait_core::privacy::requests::PrivacyError;
use petportrait_core::queue::{JobOutcome, PrivacyJob};
use petportrait_core::time::{duration_ms, now_ms};
use petportrait_core::views::PrivacyRequestView;
use tracing::Instrument;

use crate::WorkerState;

/// Attempts after which a request that keeps failing is recorded as failed.
const MAX_ATTEMPTS: i64 = 5;

pub async fn handle(state: Arc<WorkerState>, job: PrivacyJob) -> JobOutcome {
    let span = tracing::info_span!("job_run", job.kind = "privacy", privacy.request = %job.request_id);
    async move {
        let Some(id) = PrivacyRequestId::parse(&job.request_id) else {
            return JobOutcome::Abort(format!("not a privacy request id: {:?}", job.request_id));
        };
        let owner = format!("{}:{}", state.worker_id, ulid::Ulid::generate());
        // The request's lease is the generation job's (`JOB_LEASE`), renewed while the
        // job runs: a job that dies is taken over soon after.
        let lease = state.config.worker.job_lease;
        let now = now_ms();
        let claim = state.services.db.claim_privacy_request(id.as_str(), &owner, now, now + duration_ms(lease)).await;
        let request = match claim {
            Ok(PrivacyClaim::Claimed(request)) => *request,
            Ok(PrivacyClaim::Busy) => {
                tracing::debug!("another job holds the request; the scheduler dispatches it again if that job dies");
                return JobOutcome::Done;
            }
            Ok(PrivacyClaim::Ended | PrivacyClaim::NotFound) => return JobOutcome::Done,
            Err(error) => return JobOutcome::Retry(Box::new(error)),
        };
        let renewer = renew_while_running(&state, &request.id, &owner, lease);
        let outcome = match carry_out(&state, &request, &owner).await {
            Ok(()) => JobOutcome::Done,
            Err(error) => give_up_or_retry(&state, &request, &owner, error).await,
        };
        renewer.abort();
        outcome
    }
    .instrument(span)
    .await
}

/// Renews the request's lease every third of it until aborted.
fn renew_while_running(state: &WorkerState, id: &str, owner: &str, lease: Duration) -> tokio::task::JoinHandle<()> {
    let (db, id, owner) = (state.services.db.clone(), id.to_owned(), owner.to_owned());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(lease / 3);
        every.tick().await;
        loop {
            every.tick().await;
            match db.renew_privacy_lease(&id, &owner, now_ms() + duration_ms(lease)).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "could not renew the privacy request's lease")
                }
            }
        }
    })
}

async fn carry_out(state: &WorkerState, request: &PrivacyRequestRow, owner: &str) -> Result<(), PrivacyError> {
    match request.kind {
        PrivacyKind::Deletion => match deletion::carry_out(&state.services, request, owner).await? {
            DeletionProgress::Completed => Ok(()),
            DeletionProgress::LeaseLost => {
                tracing::warn!("the deletion's lease was taken over; the other job goes on");
                Ok(())
            }
        },
        PrivacyKind::Export => complete_export(state, request, owner).await,
    }
}

/// Writes the archive, then records it, the audit entry and the `privacy_export.ready`
/// deliveries in one transaction, and pushes the deliveries' jobs.
async fn complete_export(state: &WorkerState, request: &PrivacyRequestRow, owner: &str) -> Result<(), PrivacyError> {
    let services = &state.services;
    let (object_id, expires_at) = export::write_export(&state.config, services, request).await?;
    let now = now_ms();
    let mut done = request.clone();
    done.status = PrivacyStatus::Completed;
    done.object_id = Some(object_id.clone());
    done.expires_at = Some(expires_at);
    done.completed_at = Some(now);
    let view = PrivacyRequestView::new(&done, services.webhooks.public_url(), now);
    let deliveries =
        services.webhooks.account_event_deliveries(&request.user_id, EventType::PrivacyExportReady, &view, now).await?;
    let entry = audit::entry(
        services.accounts.keyring(),
        &request.user_id,
        AuditAction::StepDone,
        serde_json::json!({ "request": request.id, "step": "export_ready" }),
        now,
    );
    let completed = CompletedExport { id: &request.id, owner, object_id: &object_id, expires_at };
    match services.db.complete_export(&completed, &entry, &deliveries, now).await? {
        ExportCompletion::Completed => {}
        ExportCompletion::LeaseLost => {
            tracing::warn!(
                "the export's lease was taken over or the account is being deleted; its archive is purged at its provisional expiry"
            );
            return Ok(());
        }
        ExportCompletion::ArchiveGone => return Err(PrivacyError::ArchiveGone),
    }
    for delivery in &deliveries {
        services.webhooks.push(&delivery.id, "first", Duration::ZERO).await;
    }
    tracing::info!(deliveries = deliveries.len(), "export ready");
    Ok(())
}

/// A retryable failure lets the queue try again (the request keeps its checkpoint)
/// until `MAX_ATTEMPTS` for an export; a deletion is never given up on an outage (the
/// account is already closed: its data must go). Otherwise the request is failed.
async fn give_up_or_retry(
    state: &WorkerState,
    request: &PrivacyRequestRow,
    owner: &str,
    error: PrivacyError,
) -> JobOutcome {
    let services = &state.services;
    if error.is_retryable() && (request.kind == PrivacyKind::Deletion || request.attempts < MAX_ATTEMPTS) {
        tracing::warn!(attempt = request.attempts, error = %error_chain(&error), "privacy request failed; trying again");
        if let Err(release) = services.db.release_privacy_request(&request.id, owner, now_ms()).await {
            tracing::warn!(error = %error_chain(&release), "could not release the request; its lease lapses instead");
        }
        return JobOutcome::Retry(Box::new(error));
    }
    let code = if error.is_retryable() { "attempts_exhausted" } else { "unreadable_data" };
    tracing::error!(attempt = request.attempts, code, error = %error_chain(&error), "privacy request failed for good");
    let now = now_ms();
    let entry = audit::entry(
        services.accounts.keyring(),
        &request.user_id,
        AuditAction::RequestFailed,
        serde_json::json!({ "request": request.id, "code": code }),
        now,
    );
    match services.db.fail_privacy_request(&request.id, owner, code, &entry, now).await {
        Ok(_) => JobOutcome::Done,
        Err(db) => JobOutcome::Retry(Box::new(db)),
    }
}
