//! The worker role: takes generation jobs from the queue and runs them, and sends
//! webhook deliveries.

mod error;
pub mod generation;
mod models;
pub mod privacy;
pub mod webhook;

use std::sync::Arc;

use petportrait_core::config::Config;
use petportrait_core::queue::{JobQueueError, WorkerOptions, Workers};
use petportrait_core::services::Services;
use petportrait_studio::Studio;
use tokio_util::sync::CancellationToken;

pub use error::JobError;

/// What every job of this process shares.
pub struct WorkerState {
    pub config: Config,
    pub services: Services,
    pub studio: Arc<dyn Studio>,
    /// Unique per process: it names the process to the queue and owns job leases.
    pub worker_id: String,
}

/// Runs workers until `shutdown` is cancelled, then lets running jobs finish (up to
/// the drain deadline) and returns.
pub async fn run(
    config: Config,
    services: Services,
    studio: Arc<dyn Studio>,
    shutdown: CancellationToken,
) -> Result<(), JobQueueError> {
    petportrait_core::metrics::install();
    let worker_id = unique_worker_id();
    tracing::info!(worker.id = %worker_id, concurrency = config.worker.concurrency, "worker starting");
    let options = WorkerOptions {
        name: worker_id.clone(),
        concurrency: config.worker.concurrency,
        drain_timeout: config.worker.job_lease,
    };
    let delivery_options = WorkerOptions {
        name: format!("{worker_id}-webhooks"),
        concurrency: config.webhooks.concurrency,
        drain_timeout: config.webhooks.timeout,
    };
    // Privacy requests are rare and heavy (an export streams a whole account): one at a
    // time per process.
    let privacy_options =
        WorkerOptions { name: format!("{worker_id}-privacy"), concurrency: 1, drain_timeout: config.worker.job_lease };
    let queue = services.queue.clone();
    if let Some(cog) = &config.models.cog {
        let reporter = worker_id.clone();
        models::publish_availability(reporter, services.clone(), studio.clone(), cog.health_interval, shutdown.clone());
    }
    let state = Arc::new(WorkerState { config, services, studio, worker_id });
    let for_deliveries = state.clone();
    let for_privacy = state.clone();
    let generations = Workers::new(options, move |job| generation::handle(state.clone(), job));
    let deliveries = Workers::new(delivery_options, move |job| webhook::handle(for_deliveries.clone(), job));
    let privacy = Workers::new(privacy_options, move |job| privacy::handle(for_privacy.clone(), job));
    queue.run_workers(generations, deliveries, privacy, shutdown).await
}

/// `host-pid-random`: unique across replicas and restarts, readable in logs.
pub fn unique_worker_id() -> String {
    use rand::Rng;
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let suffix: u32 = rand::rng().random();
    format!("{host}-{}-{suffix:08x}", std::process::id())
}
