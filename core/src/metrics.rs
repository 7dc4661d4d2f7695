//! Prometheus metrics: the `metrics` facade everywhere, one recorder per process
//! (`metrics-exporter-prometheus`, rendered by our own routes: the API's `/metrics`,
//! and the worker's and scheduler's `METRICS_PORT`). Names and labels live here, so
//! every process spells them alike.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests by `method`, `route` (the template, e.g. `/v1/generations/{id}`) and `status`.
pub const HTTP_REQUESTS: &str = "petportrait_http_requests_total";
/// Their duration in seconds, by `method` and `route`.
pub const HTTP_DURATION: &str = "petportrait_http_request_duration_seconds";
/// Jobs by `queue` and `state`, read at each scrape: the generation queue's `ready`,
/// `delayed`, `active` and `dead` from the queue engine; the webhook queue's `ready`
/// (due) and `delayed` deliveries from the database.
pub const QUEUE_JOBS: &str = "petportrait_queue_jobs";
/// Generation attempts that ended, by `kind`, `style` and `outcome` (`succeeded`, `retried`, `failed`, `lost`).
pub const GENERATIONS: &str = "petportrait_generation_attempts_total";
/// Generation attempts started, by `kind`.
pub const GENERATIONS_STARTED: &str = "petportrait_generation_attempts_started_total";
/// An attempt's duration in seconds, by `kind`, `style` and `outcome`.
pub const GENERATION_DURATION: &str = "petportrait_generation_attempt_duration_seconds";
/// The ledger's total per entry `kind` (`grant`, `purchase`, `hold`, `charge`,
/// `release`, `refund`), read at each scrape (a gauge: refunds of purchases are negative).
pub const CREDITS: &str = "petportrait_ledger_credits";
/// Credits held by running or queued generations now.
pub const CREDITS_HELD: &str = "petportrait_credits_held";
/// How long the oldest job ready to run has waited, in seconds, by `queue`; 0 when none waits.
pub const QUEUE_LAG: &str = "petportrait_queue_lag_seconds";
/// Webhook delivery attempts by `outcome` (`delivered`, `retry`, `failed`, `gone`).
pub const WEBHOOK_DELIVERIES: &str = "petportrait_webhook_delivery_attempts_total";
/// Predictions at model servers by `provider` (`cog`, `remote`), `server` and `result`.
pub const PREDICTIONS: &str = "petportrait_model_predictions_total";
/// Their duration in seconds, by `provider` and `server`.
pub const PREDICTION_DURATION: &str = "petportrait_model_prediction_duration_seconds";
/// Predictions running now at a model server, by `provider` and `server`.
pub const PREDICTIONS_IN_FLIGHT: &str = "petportrait_model_predictions_in_flight";
/// Objects the purge deleted, and generations the sweep dispatched again.
pub const PURGED_OBJECTS: &str = "petportrait_purged_objects_total";
pub const SWEPT_GENERATIONS: &str = "petportrait_swept_generations_total";
/// Objects the scheduler's walk of the bucket deleted because no row owned them.
pub const ORPHAN_OBJECTS_DELETED: &str = "petportrait_orphan_objects_deleted_total";
/// Rows the walk marked deleted because their object was missing from the store.
pub const MISSING_OBJECTS: &str = "petportrait_missing_objects_total";

/// Every metric above (the dashboard in `ops/` is checked against it).
pub const ALL: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    QUEUE_JOBS,
    QUEUE_LAG,
    GENERATIONS,
    GENERATIONS_STARTED,
    GENERATION_DURATION,
    CREDITS,
    CREDITS_HELD,
    WEBHOOK_DELIVERIES,
    PREDICTIONS,
    PREDICTION_DURATION,
    PREDICTIONS_IN_FLIGHT,
    PURGED_OBJECTS,
    SWEPT_GENERATIONS,
    ORPHAN_OBJECTS_DELETED,
    MISSING_OBJECTS,
];

/// Histogram buckets in seconds: requests from a millisecond, renders up to ten minutes.
const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const WORK_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs this process's recorder (once; later calls return the same handle).
/// `None` when another recorder was installed first (then nothing is exported).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(GENERATION_DURATION.into()), WORK_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(PREDICTION_DURATION.into()), WORK_BUCKETS));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    // Histograms keep their samples until drained: the exporter asks for
                    // upkeep, whether anybody scrapes or not.
                    let upkeep = handle.clone();
                    let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                        loop {
                            std::thread::sleep(Duration::from_secs(5));
                            upkeep.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(error = %error, "metrics are off: the recorder could not be installed");
                    None
                }
            }
        })
        .clone()
}

/// The text exposition of everything recorded in this process.
pub fn render() -> String {
    install().map(|handle| handle.render()).unwrap_or_default()
}
