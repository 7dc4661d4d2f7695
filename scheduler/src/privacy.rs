//! The safety net of privacy requests: an open request nobody works on (its job was
//! lost with a queue, or its worker died and the lease lapsed) is dispatched again. The
//! job resumes after the request's last checkpoint.

use petportrait_core::services::Services;
use petportrait_core::time::Millis;

use crate::SchedulerError;

/// Requests dispatched again per tick at most.
const BATCH: i64 = 100;

/// Dispatches again every open request without a live lease that has not moved since
/// `quiet_since`; returns how many.
pub async fn redispatch_stalled_requests(
    services: &Services,
    now: Millis,
    quiet_since: Millis,
) -> Result<u64, SchedulerError> {
    let stalled = services.db.stalled_privacy_requests(now, quiet_since, BATCH).await?;
    let mut dispatched = 0;
    for id in stalled {
        // Touched first, so the next tick waits its turn again whatever the push does.
        services.db.touch_privacy_request(&id, now).await?;
        match services.queue.dispatch_privacy(&id, &format!("sweep-{now}")).await {
            Ok(()) => {
                tracing::warn!(privacy.request = %id, "stalled privacy request dispatched again");
                dispatched += 1;
            }
            Err(error) => tracing::error!(
                privacy.request = %id,
                error = %petportrait_core::errors::error_chain(&error),
                "could not dispatch a stalled privacy request"
            ),
        }
    }
    Ok(dispatched)
}
