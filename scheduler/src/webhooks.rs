//! The webhook catch-up of each tick: announcements a stopped process never made,
//! delivery jobs the queue never got, and the delivery log past its retention.

use petportrait_core::services::Services;
use petportrait_core::time::{Millis, duration_ms};

use crate::SchedulerError;

/// A change younger than this may still be announced by the process that made it.
const ANNOUNCE_GRACE_MS: Millis = 10_000;
/// A due delivery untouched for this long lost its job.
const STRANDED_AFTER_MS: Millis = 60_000;
const BATCH: i64 = 200;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookCatchUp {
    pub generations_announced: u64,
    pub deliveries_requeued: u64,
    pub deliveries_purged: u64,
}

pub async fn catch_up(services: &Services, now: Millis) -> Result<WebhookCatchUp, SchedulerError> {
    let webhooks = &services.webhooks;
    let db = &services.db;
    let mut report = WebhookCatchUp::default();
    for generation in db.unannounced_generations(now - ANNOUNCE_GRACE_MS, BATCH).await? {
        webhooks.try_announce(&generation).await?;
        report.generations_announced += 1;
    }
    for delivery in db.stranded_deliveries(now - STRANDED_AFTER_MS, now, BATCH).await? {
        // A job of its own per sweep: the lost one's name must not swallow this push.
        webhooks.push(&delivery, &format!("sweep-{now}"), std::time::Duration::ZERO).await;
        report.deliveries_requeued += 1;
    }
    let before = now - duration_ms(webhooks.config().log_retention);
    loop {
        let purged = db.purge_deliveries(before, 1_000).await?;
        report.deliveries_purged += purged;
        if purged < 1_000 {
            break;
        }
    }
    Ok(report)
}
