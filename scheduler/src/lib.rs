//! The scheduler role: periodic maintenance. Any number of scheduler processes may run;
//! a database lease lets one of them work per tick, and the work itself is idempotent,
//! so a tick that runs twice (a lease that lapsed mid-tick) does no harm.

mod objects;
mod privacy;
mod reconcile;
mod webhooks;

use std::time::Duration;

use petportrait_core::config::Config;
use petportrait_core::db::{DbError, ReconciliationRow, StalledGeneration};
use petportrait_core::errors::error_chain;
use petportrait_core::ids::GenerationId;
use petportrait_core::privacy::inventory::PAYMENT_RETENTION_DAYS;
use petportrait_core::queue::{Dispatch, DispatchId};
use petportrait_core::services::Services;
use petportrait_core::storage::StorageError;
use petportrait_core::time::{Millis, duration_ms, now_ms};
use tokio_util::sync::CancellationToken;

/// The lease that makes ticks single-flight across scheduler processes.
const LEASE_NAME: &str = "maintenance";
/// A purge stops after this many batches per tick so one tick cannot run for ever.
const MAX_BATCHES_PER_TICK: usize = 50;
/// How many stalled generations one tick dispatches again.
const STALLED_BATCH: i64 = 200;
/// `Idempotency-Key`s of checkouts and generations are honoured this long; then a retry
/// is a new request, and the key is deleted (checkouts) or cleared (generations).
pub const IDEMPOTENCY_KEY_RETENTION_MS: Millis = 24 * 3_600_000;
/// Rows of each retention deleted or cleared per tick (payments, generation keys).
const RETENTION_BATCH: i64 = 1_000;

pub use objects::{
    OBJECT_WALK, OBJECT_WALK_PAGE, OBJECT_WALK_PAGES_PER_TICK, ORPHAN_GRACE_MS, ObjectWalk, walk_objects,
};
pub use privacy::redispatch_stalled_requests;
pub use reconcile::reconcile;
pub use webhooks::WebhookCatchUp;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("database error during maintenance")]
    Db(#[from] DbError),
    #[error("object store error during maintenance")]
    Storage(#[from] StorageError),
    #[error("webhook catch-up failed")]
    Webhooks(#[from] petportrait_core::webhooks::WebhookError),
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// False when another process held the lease and this one did nothing.
    pub ran: bool,
    pub objects_purged: u64,
    pub sessions_deleted: u64,
    pub generations_redispatched: u64,
    pub checkout_keys_deleted: u64,
    /// Audit log entries past their retention period.
    pub audit_entries_deleted: u64,
    /// Open privacy requests nobody worked on, dispatched again.
    pub privacy_requests_redispatched: u64,
    /// Payment records past `PAYMENT_RETENTION_DAYS`.
    pub payments_deleted: u64,
    /// Generations whose `Idempotency-Key` was cleared after a day.
    pub generation_keys_cleared: u64,
    /// The walk of the object store: orphans deleted, rows of missing objects marked.
    pub objects: ObjectWalk,
    /// Webhook announcements made late, delivery jobs pushed again, log entries purged.
    pub webhooks: WebhookCatchUp,
    /// What the reconciliation found, when this tick ran it.
    pub reconciliation: Option<ReconciliationRow>,
}

/// Runs a tick every `config.scheduler.tick` until `shutdown`.
pub async fn run(config: &Config, services: &Services, shutdown: CancellationToken) {
    petportrait_core::metrics::install();
    let holder = format!("scheduler-{}-{:08x}", std::process::id(), rand::random::<u32>());
    let mut ticks = tokio::time::interval(config.scheduler.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(scheduler.holder = %holder, tick_ms = duration_ms(config.scheduler.tick), "scheduler starting");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match tick(config, services, &holder, now_ms()).await {
            Ok(report) if report.ran => {
                metrics::counter!(petportrait_core::metrics::PURGED_OBJECTS).increment(report.objects_purged);
                metrics::counter!(petportrait_core::metrics::SWEPT_GENERATIONS)
                    .increment(report.generations_redispatched);
                metrics::counter!(petportrait_core::metrics::ORPHAN_OBJECTS_DELETED)
                    .increment(report.objects.orphans_deleted);
                metrics::counter!(petportrait_core::metrics::MISSING_OBJECTS).increment(report.objects.missing_marked);
                tracing::info!(
                    purged = report.objects_purged,
                    sessions = report.sessions_deleted,
                    redispatched = report.generations_redispatched,
                    checkout_keys = report.checkout_keys_deleted,
                    audit_entries = report.audit_entries_deleted,
                    privacy_redispatched = report.privacy_requests_redispatched,
                    payments = report.payments_deleted,
                    generation_keys = report.generation_keys_cleared,
                    objects.listed = report.objects.keys_listed,
                    objects.orphans = report.objects.orphans_deleted,
                    objects.missing = report.objects.missing_marked,
                    webhooks.announced = report.webhooks.generations_announced,
                    webhooks.requeued = report.webhooks.deliveries_requeued,
                    webhooks.purged = report.webhooks.deliveries_purged,
                    "purge_tick done"
                )
            }
            Ok(_) => tracing::debug!("purge_tick skipped: another scheduler holds the lease"),
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "purge_tick failed; the next tick resumes")
            }
        }
    }
    if let Err(error) = services.db.release_lease(LEASE_NAME, &holder).await {
        tracing::warn!(error = %error_chain(&error), "could not release the scheduler lease");
    }
}

/// One tick at time `now` (passed in so tests can move the clock).
pub async fn tick(
    config: &Config,
    services: &Services,
    holder: &str,
    now: Millis,
) -> Result<TickReport, SchedulerError> {
    // The lease lasts a little less than a tick, so the next tick can be anyone's.
    let lease_ms = (duration_ms(config.scheduler.tick) * 9 / 10).max(1_000);
    if !services.db.try_acquire_lease(LEASE_NAME, holder, now, now + lease_ms).await? {
        return Ok(TickReport::default());
    }
    let objects_purged = purge_expired_objects(services, now, i64::from(config.scheduler.purge_batch)).await?;
    let idle_since = now - duration_ms(config.sessions.idle_timeout);
    let sessions_deleted = services.db.delete_expired_sessions(now, idle_since, 1_000).await?
        + services.db.delete_expired_sign_in_attempts(now, 1_000).await?;
    let generations_redispatched = redispatch_stalled(services, now, now - duration_ms(config.scheduler.stalled_after))
        .await?
        + dispatch_parked(services, now, config.worker.user_max_running).await?;
    let keys_before = now - IDEMPOTENCY_KEY_RETENTION_MS;
    let checkout_keys_deleted = services.db.delete_checkout_keys_before(keys_before, 1_000).await?;
    let generation_keys_cleared = services.db.clear_idempotency_keys_before(keys_before, RETENTION_BATCH).await?;
    // A minute's margin: the audit log's trigger checks the database's own clock.
    let audit_entries_deleted = services.db.delete_expired_audit(now - 60_000, 1_000).await?;
    let privacy_requests_redispatched =
        privacy::redispatch_stalled_requests(services, now, now - duration_ms(config.scheduler.stalled_after)).await?;
    let payments_before = now - i64::from(PAYMENT_RETENTION_DAYS) * 86_400_000;
    let payments_deleted = services.db.delete_payments_before(payments_before, RETENTION_BATCH).await?;
    // The walk's failure (the store unreachable) must not hold up the rest of the tick;
    // it resumes from its cursor next time.
    let objects = match walk_objects(services, now, OBJECT_WALK_PAGE, OBJECT_WALK_PAGES_PER_TICK).await {
        Ok(walk) => walk,
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "the object walk failed; the next tick resumes it");
            ObjectWalk::default()
        }
    };
    let webhooks = webhooks::catch_up(services, now).await?;
    let reconciliation = reconcile::reconcile_if_due(config, &services.db, now).await?;
    Ok(TickReport {
        webhooks,
        ran: true,
        objects_purged,
        sessions_deleted,
        generations_redispatched,
        checkout_keys_deleted,
        audit_entries_deleted,
        privacy_requests_redispatched,
        payments_deleted,
        generation_keys_cleared,
        objects,
        reconciliation,
    })
}

/// The safety net of the per-user cap: a parked generation is dispatched by the worker
/// that frees its user's slot; if that worker died first, this dispatches one parked
/// generation of each user who has room (a tick at a time, so a user's backlog never
/// comes back into the queue at once). With the cap off (perhaps just turned off),
/// every parked generation goes back, up to `PARKED_PER_USER_UNCAPPED` of each user a tick.
pub async fn dispatch_parked(services: &Services, now: Millis, cap: Option<u32>) -> Result<u64, SchedulerError> {
    let (room, per_user) = match cap {
        Some(cap) => (cap, 1),
        None => (u32::MAX, PARKED_PER_USER_UNCAPPED),
    };
    let mut dispatched = 0;
    for user in services.db.users_with_parked_and_room(now, room, 1_000).await? {
        for _ in 0..per_user {
            match petportrait_core::fairness::dispatch_next_parked(&services.db, &services.queue, &user, room).await {
                Ok(true) => dispatched += 1,
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "could not dispatch a parked generation");
                    break;
                }
            }
        }
    }
    Ok(dispatched)
}

/// Parked generations of one user dispatched per tick once the cap is off.
const PARKED_PER_USER_UNCAPPED: usize = 100;

/// Deletes expired uploads and outputs in batches: claim rows, delete the objects,
/// mark the rows. A crash between the steps leaves rows `deleting`, claimed again next
/// time; deleting a missing key succeeds, so the retry is harmless.
pub async fn purge_expired_objects(services: &Services, now: Millis, batch: i64) -> Result<u64, SchedulerError> {
    let mut purged = 0;
    for _ in 0..MAX_BATCHES_PER_TICK {
        let due = services.db.claim_due_objects(now, batch).await?;
        if due.is_empty() {
            break;
        }
        let keys: Vec<String> = due.iter().map(|d| d.object_key.clone()).collect();
        let deleted = services.store.delete_many(&keys).await?;
        let ids: Vec<String> = due.iter().filter(|d| deleted.contains(&d.object_key)).map(|d| d.id.clone()).collect();
        if ids.len() < due.len() {
            tracing::warn!(failed = due.len() - ids.len(), "some objects could not be deleted; retrying next tick");
        }
        purged += services.db.mark_objects_deleted(&ids, now).await?;
        if (due.len() as i64) < batch || ids.is_empty() {
            break;
        }
    }
    Ok(purged)
}

/// The database is the system of record and the queue only dispatches: a generation
/// that has not moved for a long time, with no live lease and no retry pending, is
/// dispatched again unless the queue still holds its latest task (a backlog is not a
/// loss). A queue that cannot answer gets the benefit of the doubt the other way: an
/// extra delivery is harmless because the worker's claim admits one at a time.
pub async fn redispatch_stalled(services: &Services, now: Millis, quiet_since: Millis) -> Result<u64, SchedulerError> {
    let mut dispatched = 0;
    let mut after: Option<(Millis, String)> = None;
    // Page through every quiet generation: those still waiting in a backlog are skipped
    // without hiding the ones behind them.
    for _ in 0..MAX_BATCHES_PER_TICK {
        let page = services
            .db
            .stalled_generations(now, quiet_since, after.as_ref().map(|(at, id)| (*at, id.as_str())), STALLED_BATCH)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some((last.updated_at, last.id.clone()));
        let full = page.len() as i64 == STALLED_BATCH;
        for stalled in page {
            if redispatch_one(services, &stalled, now).await? {
                dispatched += 1;
            }
        }
        if !full {
            break;
        }
    }
    Ok(dispatched)
}

/// Dispatches one quiet generation again unless the queue still holds its latest task.
async fn redispatch_one(services: &Services, stalled: &StalledGeneration, now: Millis) -> Result<bool, SchedulerError> {
    let Some(generation) = GenerationId::parse(&stalled.id) else { return Ok(false) };
    if let Some(task) = stalled.dispatch_task.as_deref().and_then(DispatchId::parse) {
        match services.queue.is_unfinished(&task).await {
            Ok(true) => return Ok(false),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(generation.id = %stalled.id, error = %error_chain(&error), "could not ask the queue; dispatching again");
            }
        }
    }
    // Recorded first and only if nothing changed meanwhile: a worker that just scheduled
    // a retry keeps its own dispatch. If the push then fails, the next sweep sees a task
    // the queue does not hold and tries again.
    let dispatch = Dispatch::Sweep { at: now }.plan(&generation);
    if !services.db.record_redispatch(stalled, now, &dispatch.task().to_string()).await? {
        return Ok(false);
    }
    match services.queue.dispatch(&dispatch, Duration::ZERO).await {
        Ok(()) => {
            tracing::warn!(generation.id = %stalled.id, "stalled generation dispatched again");
            Ok(true)
        }
        Err(error) => {
            tracing::error!(generation.id = %stalled.id, error = %error_chain(&error), "could not re-dispatch");
            Ok(false)
        }
    }
}
