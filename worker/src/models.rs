//! Publishes what the studio's health checks see of its model servers
//! (`model_availability`), so every API process can say which styles can run without
//! calling a model server itself.

use std::sync::Arc;
use std::time::Duration;

use petportrait_core::services::Services;
use petportrait_core::time::now_ms;
use petportrait_studio::Studio;
use tokio_util::sync::CancellationToken;

/// Every `interval`, until `shutdown`, records the studio's availability (nothing for
/// studios without model servers).
pub fn publish_availability(
    reporter: String,
    services: Services,
    studio: Arc<dyn Studio>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    if studio.availability().is_empty() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let report = studio.availability();
            if let Err(error) = services.db.record_model_availability(&reporter, &report, now_ms()).await {
                tracing::warn!(error = %petportrait_core::errors::error_chain(&error), "could not record the model servers' availability");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
}
