//! The one module that knows the queue. Nothing outside it names apalis or the queue
//! engine: the API enqueues through [`JobQueue::enqueue_generation`], the worker runs a
//! plain async handler through [`JobQueue::run_generation_workers`].
//!
//! The engine is our own crate, `petportrait-queue`, an apalis 1.0 backend over two
//! stores with one meaning: SQLite in embedded mode (tables of its own in the service's
//! database) and Redis in distributed mode (apalis-redis 1.0 falls over under a
//! backlog; see ../shared/notes/apalis-field-notes.md). The database is the system of
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
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseTarget};
use crate::ids::GenerationId;

/// The payload of a generation job: the id, never personal data. Adding a field needs
/// `#[serde(default)]`; a breaking change needs a new queue name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerationJob {
    pub generation_id: String,
}

/// The id of one queue task that dispatches a generation. The database records the
/// latest one, so the scheduler can ask the queue whether that task still waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchId(ulid::Ulid);

impl DispatchId {
    pub fn new() -> DispatchId {
        DispatchId(ulid::Ulid::generate())
    }

    pub fn parse(text: &str) -> Option<DispatchId> {
        ulid::Ulid::from_string(text).ok().map(DispatchId)
    }
}

impl Default for DispatchId {
    fn default() -> Self {
        DispatchId::new()
    }
}

impl std::fmt::Display for DispatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
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
pub enum QueueError {
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
/// How long finished jobs stay in the queue's storage before vacuum removes them.
const FINISHED_RETENTION: Duration = Duration::from_secs(3_600);

/// A handle on the queue, cheap to clone.
#[derive(Clone, Debug)]
pub struct JobQueue {
    store: QueueStore,
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
        match &$queue.store {
            QueueStore::Sqlite($store) => $body,
            QueueStore::Redis($store) => $body,
        }
    };
}

fn queue_name(prefix: &str) -> String {
    format!("{prefix}:generation.v1")
}

impl JobQueue {
    /// Connects to Redis when `REDIS_URL` is set, otherwise to the SQLite database.
    pub async fn connect(config: &Config) -> Result<JobQueue, QueueError> {
        let mut settings = QueueConfig::new(queue_name(&config.queue.prefix));
        // A worker that stops renewing loses its jobs after the same lease the database
        // gives a generation.
        settings.lease = config.worker.job_lease;
        settings.max_attempts = QUEUE_MAX_ATTEMPTS;
        settings.backoff.base = config.worker.retry_base_delay;
        settings.backoff.max = config.worker.retry_max_delay;
        let store = match (&config.queue.redis_url, &config.database) {
            (Some(url), _) => QueueStore::Redis(RedisQueue::connect(url, settings).await.map_err(QueueError::Engine)?),
            (None, DatabaseTarget::Sqlite { url }) => {
                let options: SqliteConnectOptions = url.parse().map_err(QueueError::Sqlite)?;
                let options = options
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(QueueError::Sqlite)?;
                // A push in this process wakes its idle workers at once; the poll interval
                // bounds the wait for work pushed by another process on the same file.
                settings.max_idle_wait = config.worker.poll_interval;
                QueueStore::Sqlite(SqliteQueue::connect(pool, settings).await.map_err(QueueError::Engine)?)
            }
            (None, DatabaseTarget::Postgres { .. }) => return Err(QueueError::NoSqliteDatabase),
        };
        Ok(JobQueue { store })
    }

    /// Dispatches a generation after `delay` as task `task`. `dispatch` names this
    /// dispatch ("create", "try-3", ...): pushing the same generation with the same name
    /// twice enqueues one job.
    pub async fn enqueue_generation(
        &self,
        id: &GenerationId,
        delay: Duration,
        dispatch: &str,
        task: &DispatchId,
    ) -> Result<(), QueueError> {
        let payload =
            serde_json::to_vec(&GenerationJob { generation_id: id.to_string() }).map_err(QueueError::Encode)?;
        let job = NewJob::new(payload).id(task.to_string()).after(delay).idempotency_key(format!("{id}:{dispatch}"));
        on_store!(self, store => Store::push(store, vec![job]).await).map(|_| ()).map_err(QueueError::Engine)
    }

    /// Whether the queue still holds task `task` unfinished (waiting, running or due for
    /// a retry). `false` when it finished or the queue lost it.
    pub async fn is_unfinished(&self, task: &DispatchId) -> Result<bool, QueueError> {
        let state =
            on_store!(self, store => Store::state(store, &task.to_string()).await).map_err(QueueError::Engine)?;
        Ok(matches!(state, Some(JobState::Ready | JobState::Delayed | JobState::Active)))
    }

    /// Answers when the queue's store can be reached (readiness).
    pub async fn ping(&self) -> Result<(), QueueError> {
        on_store!(self, store => Store::ping(store).await).map_err(QueueError::Engine)
    }

    /// Removes the records of jobs that finished more than `older_than` ago (the engine
    /// also trims them to its retention as it records outcomes); returns how many.
    pub async fn vacuum(&self, older_than: Duration) -> Result<u64, QueueError> {
        on_store!(self, store => Store::forget_finished(store, older_than).await).map_err(QueueError::Engine)
    }

    /// How many jobs wait, run, wait for a retry, are dead or recently finished.
    pub async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let c = on_store!(self, store => Store::counts(store).await).map_err(QueueError::Engine)?;
        Ok(QueueCounts { ready: c.ready, delayed: c.delayed, active: c.active, dead: c.dead, done: c.done })
    }

    /// The dead set (jobs out of attempts or aborted), oldest first.
    pub async fn dead_jobs(&self, offset: usize, limit: usize) -> Result<Vec<DeadEntry>, QueueError> {
        let dead =
            on_store!(self, store => Store::dead_jobs(store, offset, limit).await).map_err(QueueError::Engine)?;
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
    pub async fn replay(&self, tasks: &[String]) -> Result<u64, QueueError> {
        on_store!(self, store => Store::replay(store, tasks).await).map_err(QueueError::Engine)
    }

    pub async fn replay_all_dead(&self) -> Result<u64, QueueError> {
        on_store!(self, store => Store::replay_all(store).await).map_err(QueueError::Engine)
    }

    pub async fn purge_dead(&self) -> Result<u64, QueueError> {
        on_store!(self, store => Store::purge_dead(store).await).map_err(QueueError::Engine)
    }

    pub async fn close(&self) {
        if let QueueStore::Sqlite(store) = &self.store {
            store.pool().close().await;
        }
    }

    /// Runs workers that pass each job to `handler`, until `shutdown` is cancelled;
    /// then running jobs get `options.drain_timeout` to finish.
    pub async fn run_generation_workers<H, F>(
        &self,
        options: WorkerOptions,
        handler: H,
        shutdown: CancellationToken,
    ) -> Result<(), QueueError>
    where
        H: Fn(GenerationJob) -> F + Send + Sync + 'static,
        F: Future<Output = JobOutcome> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |job| Box::pin(handler(job)));
        let monitor = Monitor::new()
            .should_restart(|ctx, error| {
                tracing::error!(worker = ctx.name(), error = %error, "queue worker failed; restarting it");
                true
            })
            .shutdown_timeout(options.drain_timeout);
        let monitor = on_store!(self, store => register(monitor, &options, store.clone(), handler));
        let vacuum = self.spawn_vacuum(shutdown.clone());
        let result = monitor
            .run_with_signal(async move {
                shutdown.cancelled().await;
                Ok(())
            })
            .await;
        vacuum.abort();
        result.map_err(|e| QueueError::Monitor(Box::new(e)))
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
                        tracing::warn!(error = %crate::errors::chain(&error), "queue vacuum failed")
                    }
                }
            }
        })
    }
}

type Handler = Arc<dyn Fn(GenerationJob) -> Pin<Box<dyn Future<Output = JobOutcome> + Send>> + Send + Sync>;

/// The apalis handler: runs ours, turns panics into aborted jobs, maps outcomes (the
/// engine retries an `Err` with backoff up to the job's attempts, and never an abort).
async fn dispatch(job: GenerationJob, handler: Data<Handler>) -> Result<(), BoxDynError> {
    let outcome = AssertUnwindSafe((*handler)(job)).catch_unwind().await;
    match outcome {
        Ok(JobOutcome::Done) => Ok(()),
        Ok(JobOutcome::Retry(error)) => Err(error),
        Ok(JobOutcome::Abort(reason)) => Err(AbortError::new(reason).into()),
        Err(_) => {
            tracing::error!("job handler panicked; the job is aborted and its generation swept later");
            Err(AbortError::new("handler panicked").into())
        }
    }
}

/// Registers the generation worker on either store.
fn register<S: Store>(monitor: Monitor, options: &WorkerOptions, store: S, handler: Handler) -> Monitor {
    let name = options.name.clone();
    let concurrency = options.concurrency;
    monitor.register(move |restarts| {
        WorkerBuilder::new(format!("{name}#{restarts}"))
            .backend(QueueBackend::<S, GenerationJob>::new(store.clone(), concurrency))
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .data(handler.clone())
            .build(dispatch)
    })
}
