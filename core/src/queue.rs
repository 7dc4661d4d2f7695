//! The platform's one module that knows the queue. No other platform code names apalis
//! or the queue engine (`scripts/check-boundaries` checks that `petportrait-core` is the
//! only platform crate that depends on them; it re-exports the engine's two plain
//! functions, `backoff_delay` here and `error_chain` in `errors`, and its Redis
//! connection types for the change feed): the API, the worker and the scheduler dispatch
//! through [`JobQueue::dispatch`], the worker runs a plain async handler through
//! [`JobQueue::run_generation_workers`].
//!
//! The engine is our own crate, `petportrait-queue`, an apalis 1.0 backend over two
//! stores with one meaning: SQLite in embedded mode (tables of its own in the service's
//! database) and Redis in distributed mode (apalis-redis 1.0 falls over under a
//! backlog: `bench/results/apalis-crash.jsonl`, BENCHMARKS.md). The database is the system of
//! record, so the queue only dispatches: payloads carry a generation id and nothing
//! else, retries of a generation are decided by the worker (which pushes a delayed
//! job), and the engine's own retry only covers "the handler could not record an
//! outcome".

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use futures::FutureExt;
use petportrait_queue::{JobState, NewJob, QueueBackend, QueueConfig, RedisQueue, SqliteQueue, Store};

/// Exponential backoff with equal jitter: the engine's own, so the worker's retries of a
/// generation and the remote studio's retries of a call back off the same way.
pub use petportrait_queue::backoff_delay;
/// One Redis server or a cluster, a connection to either, and the clean-up of a
/// prefix's keys on every master: the engine's own, so the change feed (and the tests'
/// clean-up) reach Redis the way the queue does.
pub use petportrait_queue::{RedisConnection, RedisTarget, remove_keys_with_prefix};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseTarget};
use crate::ids::GenerationId;
use crate::time::Millis;

/// The payload of a generation job: the id, never personal data. Adding a field needs
/// `#[serde(default)]`; a breaking change needs a new queue name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerationJob {
    pub generation_id: String,
}

/// The payload of a webhook delivery job: the delivery's id (its row holds the rest).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: String,
}

/// The payload of a privacy job: the request's id (its row holds the rest).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrivacyJob {
    pub request_id: String,
}

/// The id of one queue task that dispatches a generation. The database records the
/// latest one, so the scheduler can ask the queue whether that task still waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchId(ulid::Ulid);

impl DispatchId {
    fn new() -> DispatchId {
        DispatchId(ulid::Ulid::generate())
    }

    pub fn parse(text: &str) -> Option<DispatchId> {
        ulid::Ulid::from_string(text).ok().map(DispatchId)
    }
}

impl std::fmt::Display for DispatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a generation is put on the queue. Each reason names the push's idempotency key,
/// so the same dispatch made twice (a retried request, two workers scheduling one
/// retry) enqueues one job, while dispatches that must all happen never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// The generation was just created.
    Create,
    /// Attempt `attempt` after a failed one, once its backoff has passed.
    Retry { attempt: i64 },
    /// Another delivery holds the generation or its retry is not due: look again later.
    /// Every look is a job of its own.
    LookAgain,
    /// The scheduler's sweep found the generation stalled at `at` (ms).
    Sweep { at: Millis },
}

/// A dispatch about to be made. Its task id is recorded in the generation's row before
/// the push, so the sweep can tell a task the queue lost from one still waiting.
#[derive(Clone, Debug)]
pub struct PlannedDispatch {
    generation: GenerationId,
    task: DispatchId,
    key: String,
}

impl PlannedDispatch {
    /// What to record in the row (`dispatch_task`).
    pub fn task(&self) -> &DispatchId {
        &self.task
    }
}

impl Dispatch {
    /// Names this dispatch of `generation` and gives it a fresh task id.
    pub fn plan(self, generation: &GenerationId) -> PlannedDispatch {
        let task = DispatchId::new();
        let key = match self {
            Dispatch::Create => format!("{generation}:create"),
            Dispatch::Retry { attempt } => format!("{generation}:try-{attempt}"),
            Dispatch::LookAgain => format!("{generation}:look-{task}"),
            Dispatch::Sweep { at } => format!("{generation}:sweep-{at}"),
        };
        PlannedDispatch { generation: generation.clone(), task, key }
    }
}

/// What a handler tells the queue.
#[derive(Debug)]
pub enum JobOutcome {
    /// Acknowledge: the outcome is recorded in the database.
    Done,
    /// Deliver again soon: the handler could not record an outcome.
    Retry(Box<dyn std::error::Error + Send + Sync>),
    /// Never deliver again (a malformed payload, a panic).
    Abort(String),
}

/// How this process's workers behave.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Unique per process; it names the worker's leases in the queue.
    pub name: String,
    pub concurrency: usize,
    /// How long a stopping worker waits for its running jobs.
    pub drain_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum JobQueueError {
    #[error("cannot open the SQLite queue")]
    Sqlite(#[source] sqlx::Error),
    #[error("the queue failed")]
    Engine(#[source] petportrait_queue::QueueError),
    #[error("the SQLite queue needs a SQLite database; set REDIS_URL for PostgreSQL")]
    NoSqliteDatabase,
    #[error("encoding a job failed")]
    Encode(#[source] serde_json::Error),
    #[error("the worker monitor failed")]
    Monitor(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    pub ready: u64,
    pub delayed: u64,
    pub active: u64,
    pub dead: u64,
    pub done: u64,
}

/// A job in the dead set, as the operator sees it.
#[derive(Clone, Debug, Serialize)]
pub struct DeadEntry {
    pub task: String,
    pub generation_id: Option<String>,
    pub attempts: u32,
    pub error: String,
    pub died_at_ms: i64,
}

/// Attempts after which the queue stops redelivering a job whose handler could not
/// record an outcome (the scheduler's stalled sweep still finds the generation).
const QUEUE_MAX_ATTEMPTS: u32 = 25;
/// How long a privacy job holds its queue task without renewing it (the engine renews
/// while the handler runs; the request's own lease in the database is what admits one
/// job at a time).
const PRIVACY_JOB_LEASE: Duration = Duration::from_secs(300);
/// How long finished jobs stay in the queue's storage before vacuum removes them.
const FINISHED_RETENTION: Duration = Duration::from_secs(3_600);

/// A handle on the queues, cheap to clone: generations, webhook deliveries and privacy
/// requests, each a queue of its own, so a backlog of one never holds up another.
#[derive(Clone, Debug)]
pub struct JobQueue {
    store: QueueStore,
    deliveries: QueueStore,
    privacy: QueueStore,
}

#[derive(Clone, Debug)]
enum QueueStore {
    Sqlite(SqliteQueue),
    Redis(RedisQueue),
}

/// Runs the same generic code on whichever store the queue uses (two types, so one
/// match arm each).
macro_rules! on_store {
    ($queue:expr, $store:ident => $body:expr) => {
        on_store!(@ &$queue.store, $store => $body)
    };
    (@ $which:expr, $store:ident => $body:expr) => {
        match $which {
            QueueStore::Sqlite($store) => $body,
            QueueStore::Redis($store) => $body,
        }
    };
}

fn queue_name(prefix: &str) -> String {
    format!("{prefix}:generation.v1")
}

fn delivery_queue_name(prefix: &str) -> String {
    format!("{prefix}:webhook.v1")
}

fn privacy_queue_name(prefix: &str) -> String {
    format!("{prefix}:privacy.v1")
}

/// The server or cluster `REDIS_URL` (with `REDIS_CLUSTER`) names.
pub fn redis_target(url: &str, cluster: bool) -> Result<RedisTarget, JobQueueError> {
    RedisTarget::parse(url, cluster).map_err(|error| JobQueueError::Engine(error.into()))
}

impl JobQueue {
    /// Connects to Redis (one server or a cluster) when `REDIS_URL` is set, otherwise
    /// to the SQLite database.
    pub async fn connect(config: &Config) -> Result<JobQueue, JobQueueError> {
        let mut settings = QueueConfig::new(queue_name(&config.queue.prefix));
        // A worker that stops renewing loses its jobs after the same lease the database
        // gives a generation.
        settings.lease = config.worker.job_lease;
        settings.max_attempts = QUEUE_MAX_ATTEMPTS;
        settings.backoff.base = config.worker.retry_base_delay;
        settings.backoff.max = config.worker.retry_max_delay;
        let mut delivery_settings = settings.clone();
        delivery_settings.name = delivery_queue_name(&config.queue.prefix);
        // An attempt holds its job for at most the endpoint's timeout and two writes.
        delivery_settings.lease = config.webhooks.timeout + Duration::from_secs(15);
        let mut privacy_settings = settings.clone();
        privacy_settings.name = privacy_queue_name(&config.queue.prefix);
        privacy_settings.lease = PRIVACY_JOB_LEASE;
        let (store, deliveries, privacy) = match (&config.queue.redis_url, &config.database) {
            (Some(url), _) => {
                let target = redis_target(url, config.queue.redis_cluster)?;
                let connect = |settings| {
                    let target = target.clone();
                    async move { RedisQueue::connect_to(target, settings).await.map_err(JobQueueError::Engine) }
                };
                (
                    QueueStore::Redis(connect(settings).await?),
                    QueueStore::Redis(connect(delivery_settings).await?),
                    QueueStore::Redis(connect(privacy_settings).await?),
                )
            }
            (None, DatabaseTarget::Sqlite { url }) => {
                let options: SqliteConnectOptions = url.parse().map_err(JobQueueError::Sqlite)?;
                let options = options
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(JobQueueError::Sqlite)?;
                // A push in this process wakes its idle workers at once; the poll interval
                // bounds the wait for work pushed by another process on the same file.
                settings.max_idle_wait = config.worker.poll_interval;
                delivery_settings.max_idle_wait = config.worker.poll_interval;
                privacy_settings.max_idle_wait = config.worker.poll_interval;
                let connect = |settings| {
                    let pool = pool.clone();
                    async move { SqliteQueue::connect(pool, settings).await.map_err(JobQueueError::Engine) }
                };
                (
                    QueueStore::Sqlite(connect(settings).await?),
                    QueueStore::Sqlite(connect(delivery_settings).await?),
                    QueueStore::Sqlite(connect(privacy_settings).await?),
                )
            }
            (None, DatabaseTarget::Postgres { .. }) => return Err(JobQueueError::NoSqliteDatabase),
        };
        Ok(JobQueue { store, deliveries, privacy })
    }

    /// Pushes the job of webhook delivery `delivery`, due after `delay`. `key` names
    /// this push (one per attempt), so the same push made twice enqueues one job.
    pub async fn dispatch_delivery(&self, delivery: &str, key: &str, delay: Duration) -> Result<(), JobQueueError> {
        let payload =
            serde_json::to_vec(&DeliveryJob { delivery_id: delivery.to_owned() }).map_err(JobQueueError::Encode)?;
        push_one(&self.deliveries, payload, format!("{delivery}:{key}"), delay).await
    }

    /// Pushes the job of privacy request `request`. `key` names this push (the request's
    /// receipt, or the scheduler's look at a stalled request), so the same push made
    /// twice enqueues one job.
    pub async fn dispatch_privacy(&self, request: &str, key: &str) -> Result<(), JobQueueError> {
        let payload =
            serde_json::to_vec(&PrivacyJob { request_id: request.to_owned() }).map_err(JobQueueError::Encode)?;
        push_one(&self.privacy, payload, format!("{request}:{key}"), Duration::ZERO).await
    }

    /// Pushes a planned dispatch, due after `delay`. Pushing the same plan again (or
    /// another plan with the same key) enqueues nothing more.
    pub async fn dispatch(&self, planned: &PlannedDispatch, delay: Duration) -> Result<(), JobQueueError> {
        let job = GenerationJob { generation_id: planned.generation.to_string() };
        let payload = serde_json::to_vec(&job).map_err(JobQueueError::Encode)?;
        let job = NewJob::new(payload).id(planned.task.to_string()).after(delay).idempotency_key(planned.key.clone());
        on_store!(self, store => Store::push(store, vec![job]).await).map(|_| ()).map_err(JobQueueError::Engine)
    }

    /// Whether the queue still holds task `task` unfinished (waiting, running or due for
    /// a retry). `false` when it finished or the queue lost it.
    pub async fn is_unfinished(&self, task: &DispatchId) -> Result<bool, JobQueueError> {
        let state =
            on_store!(self, store => Store::state(store, &task.to_string()).await).map_err(JobQueueError::Engine)?;
        Ok(matches!(state, Some(JobState::Ready | JobState::Delayed | JobState::Active)))
    }

    /// Answers when the queue's store can be reached (readiness).
    pub async fn ping(&self) -> Result<(), JobQueueError> {
        on_store!(self, store => Store::ping(store).await).map_err(JobQueueError::Engine)
    }

    /// Removes the records of jobs that finished more than `older_than` ago (the engine
    /// also trims them to its retention as it records outcomes); returns how many.
    pub async fn vacuum(&self, older_than: Duration) -> Result<u64, JobQueueError> {
        let mut removed = 0;
        for queue in [&self.store, &self.deliveries, &self.privacy] {
            removed += on_store!(@ queue, store => Store::forget_finished(store, older_than).await)
                .map_err(JobQueueError::Engine)?;
        }
        Ok(removed)
    }

    /// How many jobs wait, run, wait for a retry, are dead or recently finished.
    pub async fn counts(&self) -> Result<QueueCounts, JobQueueError> {
        let c = on_store!(self, store => Store::counts(store).await).map_err(JobQueueError::Engine)?;
        Ok(QueueCounts { ready: c.ready, delayed: c.delayed, active: c.active, dead: c.dead, done: c.done })
    }

    /// The dead set (jobs out of attempts or aborted), oldest first.
    pub async fn dead_jobs(&self, offset: usize, limit: usize) -> Result<Vec<DeadEntry>, JobQueueError> {
        let dead =
            on_store!(self, store => Store::dead_jobs(store, offset, limit).await).map_err(JobQueueError::Engine)?;
        Ok(dead
            .into_iter()
            .map(|job| DeadEntry {
                generation_id: serde_json::from_slice::<GenerationJob>(&job.payload).ok().map(|j| j.generation_id),
                task: job.id,
                attempts: job.attempts,
                error: job.error,
                died_at_ms: job.died_at_ms,
            })
            .collect())
    }

    /// Puts the named dead jobs back in line with fresh attempts; returns how many.
    pub async fn replay(&self, tasks: &[String]) -> Result<u64, JobQueueError> {
        on_store!(self, store => Store::replay(store, tasks).await).map_err(JobQueueError::Engine)
    }

    pub async fn replay_all_dead(&self) -> Result<u64, JobQueueError> {
        on_store!(self, store => Store::replay_all(store).await).map_err(JobQueueError::Engine)
    }

    pub async fn purge_dead(&self) -> Result<u64, JobQueueError> {
        on_store!(self, store => Store::purge_dead(store).await).map_err(JobQueueError::Engine)
    }

    pub async fn close(&self) {
        if let QueueStore::Sqlite(store) = &self.store {
            store.pool().close().await;
        }
    }

    /// Runs the generation, delivery and privacy workers, each passing its jobs to its
    /// handler, until `shutdown` is cancelled; then running jobs get their `drain_timeout`.
    pub async fn run_workers(
        &self,
        generations: Workers<GenerationJob>,
        deliveries: Workers<DeliveryJob>,
        privacy: Workers<PrivacyJob>,
        shutdown: CancellationToken,
    ) -> Result<(), JobQueueError> {
        let drain =
            generations.options.drain_timeout.max(deliveries.options.drain_timeout).max(privacy.options.drain_timeout);
        let monitor = Monitor::new()
            .should_restart(|ctx, error| {
                tracing::error!(worker = ctx.name(), error = %error, "queue worker failed; restarting it");
                true
            })
            .shutdown_timeout(drain);
        let monitor = on_store!(self, store => register!(monitor, generations, store.clone(), GenerationJob));
        let monitor =
            on_store!(@ &self.deliveries, store => register!(monitor, deliveries, store.clone(), DeliveryJob));
        let monitor = on_store!(@ &self.privacy, store => register!(monitor, privacy, store.clone(), PrivacyJob));
        let vacuum = self.spawn_vacuum(shutdown.clone());
        let result = monitor
            .run_with_signal(async move {
                shutdown.cancelled().await;
                Ok(())
            })
            .await;
        vacuum.abort();
        result.map_err(|e| JobQueueError::Monitor(Box::new(e)))
    }

    /// Vacuums finished jobs every few minutes while workers run.
    fn spawn_vacuum(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(300));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                match queue.vacuum(FINISHED_RETENTION).await {
                    Ok(removed) if removed > 0 => tracing::info!(removed, "vacuumed finished jobs"),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %crate::errors::error_chain(&error), "queue vacuum failed")
                    }
                }
            }
        })
    }
}

/// Pushes one job of `payload` to `queue`, due after `delay`; `key` names the push, so
/// the same push made twice enqueues one job.
async fn push_one(queue: &QueueStore, payload: Vec<u8>, key: String, delay: Duration) -> Result<(), JobQueueError> {
    let job = NewJob::new(payload).after(delay).idempotency_key(key);
    on_store!(@ queue, store => Store::push(store, vec![job]).await).map(|_| ()).map_err(JobQueueError::Engine)
}

type Handler<J> = Arc<dyn Fn(J) -> Pin<Box<dyn Future<Output = JobOutcome> + Send>> + Send + Sync>;

/// The workers of one queue: how many, and the plain async handler of its jobs.
pub struct Workers<J> {
    options: WorkerOptions,
    handler: Handler<J>,
}

impl<J: 'static> Workers<J> {
    pub fn new<H, F>(options: WorkerOptions, handler: H) -> Workers<J>
    where
        H: Fn(J) -> F + Send + Sync + 'static,
        F: Future<Output = JobOutcome> + Send + 'static,
    {
        Workers { options, handler: Arc::new(move |job| Box::pin(handler(job))) }
    }
}

/// The apalis handler: runs ours, turns panics into aborted jobs, maps outcomes (the
/// engine retries an `Err` with backoff up to the job's attempts, and never an abort).
async fn dispatch<J>(job: J, handler: Data<Handler<J>>) -> Result<(), BoxDynError> {
    let outcome = AssertUnwindSafe((*handler)(job)).catch_unwind().await;
    match outcome {
        Ok(JobOutcome::Done) => Ok(()),
        Ok(JobOutcome::Retry(error)) => Err(error),
        Ok(JobOutcome::Abort(reason)) => Err(AbortError::new(reason).into()),
        Err(_) => {
            tracing::error!("job handler panicked; the job is aborted (the scheduler's sweeps find its work again)");
            Err(AbortError::new("handler panicked").into())
        }
    }
}

/// Registers one queue's workers (jobs of type `$job`) on either store. A macro, as
/// apalis's handler traits are implemented for concrete job types only.
macro_rules! register {
    ($monitor:expr, $workers:expr, $store:expr, $job:ty) => {{
        let workers: Workers<$job> = $workers;
        let store = $store;
        let name = workers.options.name.clone();
        let concurrency = workers.options.concurrency;
        let handler = workers.handler;
        $monitor.register(move |restarts| {
            WorkerBuilder::new(format!("{name}#{restarts}"))
                .backend(QueueBackend::<_, $job>::new(store.clone(), concurrency))
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .data(handler.clone())
                .build(dispatch::<$job>)
        })
    }};
}
use register;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dispatch_names_its_key() {
        let id = GenerationId::generate();
        let key = |dispatch: Dispatch| dispatch.plan(&id).key;
        assert_eq!(key(Dispatch::Create), format!("{id}:create"));
        assert_eq!(key(Dispatch::Retry { attempt: 3 }), format!("{id}:try-3"));
        assert_eq!(key(Dispatch::Sweep { at: 42 }), format!("{id}:sweep-42"));
        // The same retry planned twice is one job; two looks are two jobs.
        assert_eq!(key(Dispatch::Retry { attempt: 2 }), key(Dispatch::Retry { attempt: 2 }));
        assert_ne!(key(Dispatch::LookAgain), key(Dispatch::LookAgain));
        // Every plan gets its own task id to record.
        assert_ne!(Dispatch::Create.plan(&id).task(), Dispatch::Create.plan(&id).task());
    }
}
