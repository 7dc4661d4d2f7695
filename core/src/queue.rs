//! The one module that knows the queue. Nothing outside it names apalis or its
//! backends: the API enqueues through [`JobQueue::enqueue_generation`], the worker
//! runs a plain async handler through [`JobQueue::run_generation_workers`].
//!
//! Embedded mode keeps the queue in the SQLite database (apalis-sqlite); distributed
//! mode uses Redis through our own engine, `petportrait-queue` (an apalis backend with
//! per-job leases, blocking pickup and bounded memory; apalis-redis 1.0 falls over
//! under a backlog). The database is the system of record, so the queue
//! only dispatches: payloads carry a generation id and nothing else, retries with
//! backoff are decided by the worker (which pushes a delayed job), and the apalis
//! backends' own retry loop only covers "the handler could not record an outcome".
//!
//! apalis 1.0 pitfalls handled here (see ../shared/notes/apalis-field-notes.md):
//! a poll strategy on the SQLite worker (a push never wakes an idle worker otherwise),
//! unique worker names, explicit queue names, a finite orphan window, panics caught in
//! the handler, restarts of failed workers, acknowledgements kept on, and periodic
//! vacuum of SQLite's finished jobs (the Redis engine trims its own).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::finalize::Durable;
use apalis_core::backend::{BackendConfig, WireFormatBackend};
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use futures::FutureExt;
use petportrait_queue::{JobState, NewJob, QueueConfig, RedisBackend, RedisQueue};
use serde::{Deserialize, Serialize};
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
    /// Unique per process; apalis refuses two live workers of one name.
    pub name: String,
    pub concurrency: usize,
    pub heartbeat: Duration,
    pub poll_interval: Duration,
    /// How long a stopping worker waits for its running jobs.
    pub drain_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot open the SQLite queue")]
    Sqlite(#[source] apalis_sqlite::SqlxError),
    #[error("cannot set up the SQLite queue")]
    SqliteSetup(#[source] apalis_sqlite::Error),
    #[error("the Redis queue failed")]
    Redis(#[source] petportrait_queue::QueueError),
    #[error("the SQLite queue needs a SQLite database; set REDIS_URL for PostgreSQL")]
    NoSqliteDatabase,
    #[error("pushing a job failed")]
    Push(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("looking a task up failed")]
    Inspect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("vacuuming finished jobs failed")]
    Vacuum(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the worker monitor failed")]
    Monitor(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Attempts after which the backend stops redelivering a job whose handler could not
/// record an outcome (the scheduler's stalled sweep still finds the generation).
const QUEUE_MAX_ATTEMPTS: usize = 25;
/// How long finished jobs stay in the queue's storage before vacuum removes them.
const FINISHED_RETENTION: Duration = Duration::from_secs(3_600);
/// Heartbeats a worker may miss before its jobs are handed to another worker.
const MISSED_HEARTBEATS: usize = 3;

/// A handle on the queue, cheap to clone.
#[derive(Clone, Debug)]
pub struct JobQueue {
    backend: QueueBackend,
}

#[derive(Clone, Debug)]
enum QueueBackend {
    Sqlite { storage: Box<SqliteStorage<GenerationJob>>, pool: SqlitePool, queue: String },
    Redis { queue: RedisQueue },
}

fn queue_name(prefix: &str) -> String {
    format!("{prefix}:generation.v1")
}

impl JobQueue {
    /// Connects to Redis when `REDIS_URL` is set, otherwise to the SQLite database.
    pub async fn connect(config: &Config) -> Result<JobQueue, QueueError> {
        let queue = queue_name(&config.queue.prefix);
        // Whole seconds: apalis-sqlite compares heartbeats in seconds.
        let heartbeat = Duration::from_secs(config.worker.heartbeat.as_secs().max(1));
        let batch = config.worker.concurrency.clamp(1, 10);
        let backend = match (&config.queue.redis_url, &config.database) {
            (Some(url), _) => {
                let mut cfg = QueueConfig::new(&queue);
                // A worker that stops renewing loses its jobs after the same lease the
                // database gives a generation.
                cfg.lease = config.worker.job_lease;
                cfg.max_attempts = QUEUE_MAX_ATTEMPTS as u32;
                cfg.backoff.base = config.worker.retry_base_delay;
                cfg.backoff.max = config.worker.retry_max_delay;
                cfg.idempotency_ttl = Duration::from_secs(86_400);
                QueueBackend::Redis { queue: RedisQueue::connect(url, cfg).await.map_err(QueueError::Redis)? }
            }
            (None, DatabaseTarget::Sqlite { url }) => {
                let options: SqliteConnectOptions = url.parse().map_err(QueueError::Sqlite)?;
                let options = options
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                // apalis's setup leaves `synchronous = OFF` on the connection it used, so
                // it runs on a connection of its own that is closed afterwards.
                let setup = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
                    .await
                    .map_err(QueueError::Sqlite)?;
                SqliteStorage::setup(&setup).await.map_err(QueueError::SqliteSetup)?;
                setup.close().await;
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(QueueError::Sqlite)?;
                let cfg = apalis_sqlite::Config::default()
                    .queue(&queue)
                    .batch_size(batch)
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(MISSED_HEARTBEATS)
                    .lock_tasks(true)
                    .persist_results(true);
                QueueBackend::Sqlite { storage: Box::new(SqliteStorage::new(&pool).with_config(cfg)), pool, queue }
            }
            (None, DatabaseTarget::Postgres { .. }) => return Err(QueueError::NoSqliteDatabase),
        };
        Ok(JobQueue { backend })
    }

    /// Dispatches a generation after `delay` (rounded up to whole seconds by the
    /// backends) as task `task`. `dispatch` names this dispatch ("create", "try-3", ...):
    /// pushing the same generation with the same name twice enqueues one job.
    pub async fn enqueue_generation(
        &self,
        id: &GenerationId,
        delay: Duration,
        dispatch: &str,
        task: &DispatchId,
    ) -> Result<(), QueueError> {
        let idempotency_key = format!("{id}:{dispatch}");
        let job = GenerationJob { generation_id: id.to_string() };
        match &self.backend {
            QueueBackend::Sqlite { storage, .. } => {
                let task = TaskBuilder::new(job)
                    .task_id(TaskId::from_ulid(task.0))
                    .run_after(whole_seconds_after(crate::time::now_ms(), delay))
                    .max_attempts(QUEUE_MAX_ATTEMPTS)
                    .idempotency_key(idempotency_key)
                    .build();
                (**storage).clone().push_task(task).await.map_err(|e| QueueError::Push(Box::new(e)))
            }
            QueueBackend::Redis { queue } => {
                let payload = serde_json::to_vec(&job).map_err(|e| QueueError::Push(Box::new(e)))?;
                let job = NewJob::new(payload).id(task.to_string()).after(delay).idempotency_key(idempotency_key);
                queue.push(vec![job]).await.map(|_| ()).map_err(QueueError::Redis)
            }
        }
    }

    /// Whether the queue still holds task `task` unfinished (waiting, running or due for
    /// a retry). `false` when it finished or the queue lost it.
    pub async fn is_unfinished(&self, task: &DispatchId) -> Result<bool, QueueError> {
        let storage = match &self.backend {
            QueueBackend::Sqlite { storage, .. } => storage.as_ref(),
            QueueBackend::Redis { queue } => {
                let state = queue.state(&task.to_string()).await.map_err(QueueError::Redis)?;
                return Ok(matches!(state, Some(JobState::Ready | JobState::Delayed | JobState::Active)));
            }
        };
        let found = storage
            .clone()
            .fetch_by_id(&TaskId::from_ulid(task.0))
            .await
            .map(|t| t.map(|t| (t.status(), t.attempt())))
            .map_err(|e| QueueError::Inspect(Box::new(e)))?;
        Ok(match found {
            Some((Status::Pending | Status::Queued | Status::Running, _)) => true,
            // A failed task is retried below the attempt cap; at the cap it is final.
            Some((Status::Failed, attempt)) => attempt < QUEUE_MAX_ATTEMPTS,
            _ => false,
        })
    }

    /// Answers when the queue's store can be reached (readiness).
    pub async fn ping(&self) -> Result<(), QueueError> {
        match &self.backend {
            QueueBackend::Sqlite { pool, .. } => {
                sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(QueueError::Sqlite)
            }
            QueueBackend::Redis { queue } => queue.ping().await.map_err(QueueError::Redis),
        }
    }

    /// Removes jobs that finished more than `older_than` ago; returns how many.
    pub async fn vacuum(&self, older_than: Duration) -> Result<u64, QueueError> {
        match &self.backend {
            // apalis-sqlite 1.0's own vacuum ignores the age (it compares an integer with
            // a date string) and rewrites the whole file with VACUUM, our tables
            // included; this deletes only our queue's finished rows, by age.
            QueueBackend::Sqlite { pool, queue, .. } => {
                let cutoff = (crate::time::now_ms() / 1000) - older_than.as_secs() as i64;
                sqlx::query(
                    "DELETE FROM Jobs WHERE job_type = ?1 AND done_at IS NOT NULL AND done_at < ?2 \
                     AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND max_attempts <= attempts))",
                )
                .bind(queue)
                .bind(cutoff)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(QueueError::Sqlite)
            }
            // The Redis engine also trims finished jobs itself as it records outcomes.
            QueueBackend::Redis { queue } => queue.forget_finished(older_than).await.map_err(QueueError::Redis),
        }
    }

    pub async fn close(&self) {
        if let QueueBackend::Sqlite { pool, .. } = &self.backend {
            pool.close().await;
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
        let monitor = match &self.backend {
            QueueBackend::Sqlite { storage, .. } => register(
                monitor,
                &options,
                storage.clone().poll_with_strategy(Every::new(options.poll_interval)),
                handler,
            ),
            QueueBackend::Redis { queue } => {
                register_redis(monitor, &options, queue.backend(options.concurrency), handler)
            }
        };
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

/// The apalis handler: runs ours, turns panics into aborted jobs, maps outcomes.
async fn dispatch(job: GenerationJob, handler: Data<Handler>, attempt: Attempt) -> Result<(), BoxDynError> {
    let outcome = AssertUnwindSafe((*handler)(job)).catch_unwind().await;
    match outcome {
        Ok(JobOutcome::Done) => Ok(()),
        Ok(JobOutcome::Retry(error)) if attempt.current() < QUEUE_MAX_ATTEMPTS => Err(error),
        Ok(JobOutcome::Retry(error)) => Err(AbortError::new(error).into()),
        Ok(JobOutcome::Abort(reason)) => Err(AbortError::new(reason).into()),
        Err(_) => {
            tracing::error!("job handler panicked; the job is aborted and its generation swept later");
            Err(AbortError::new("handler panicked").into())
        }
    }
}

/// The backends schedule in whole seconds from the current second (`run_at =
/// floor(now) + delay`), so a job asked for 950 ms at 12:00:00.400 would run at
/// 12:00:01.000, before it is due. This returns the whole-second delay whose `run_at`
/// is the first second at or after `now + delay`.
fn whole_seconds_after(now_ms: i64, delay: Duration) -> Duration {
    if delay.is_zero() {
        return Duration::ZERO;
    }
    let due_ms = now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    let due_second = due_ms.div_euclid(1000) + i64::from(due_ms.rem_euclid(1000) > 0);
    Duration::from_secs(u64::try_from(due_second - now_ms.div_euclid(1000)).unwrap_or(0))
}

/// The persistence layer both backends use.
type PersistLayer = <SqliteStorage<GenerationJob> as BackendConfig>::Layer;

/// Registers the generation worker on the SQLite queue.
fn register<B>(monitor: Monitor, options: &WorkerOptions, backend: B, handler: Handler) -> Monitor
where
    B: Backend<Task = Task<Vec<u8>>>
        + BackendConfig<Args = GenerationJob, Kind = Durable, Layer = PersistLayer>
        + WireFormatBackend<Codec = apalis_sqlite::JsonCodec<Vec<u8>>>
        + Clone
        + Send
        + Sync
        + Unpin
        + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let name = options.name.clone();
    let concurrency = options.concurrency;
    monitor.register(move |restarts| {
        WorkerBuilder::new(format!("{name}#{restarts}"))
            .backend(backend.clone())
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .data(handler.clone())
            .build(dispatch)
    })
}

/// Registers the generation worker on the Redis engine, which needs no poll strategy:
/// a push wakes an idle worker through Redis itself.
fn register_redis(
    monitor: Monitor,
    options: &WorkerOptions,
    backend: RedisBackend<GenerationJob>,
    handler: Handler,
) -> Monitor {
    let name = options.name.clone();
    let concurrency = options.concurrency;
    monitor.register(move |restarts| {
        WorkerBuilder::new(format!("{name}#{restarts}"))
            .backend(backend.clone())
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .data(handler.clone())
            .build(dispatch)
    })
}

/// A poll strategy that fires every period and never misses a tick (apalis's own
/// interval strategy can stall for a heartbeat period).
#[derive(Debug)]
struct Every(tokio::time::Interval, Duration);

impl Clone for Every {
    fn clone(&self) -> Self {
        Every::new(self.1)
    }
}

impl Every {
    fn new(period: Duration) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Every(interval, period)
    }
}

impl PollStrategy for Every {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;
        // Poll until Pending so the waker is armed for the next tick.
        while self.0.poll_tick(cx).is_ready() {
            fired = true;
        }
        if fired { Poll::Ready(Some(())) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_delays_never_run_early() {
        // 950 ms asked at .400 is due at .350 of the next-but-one second: run_at 2 s on.
        assert_eq!(whole_seconds_after(10_400, Duration::from_millis(950)), Duration::from_secs(2));
        assert_eq!(whole_seconds_after(10_000, Duration::from_millis(1_000)), Duration::from_secs(1));
        assert_eq!(whole_seconds_after(10_999, Duration::from_millis(1)), Duration::from_secs(1));
        assert_eq!(whole_seconds_after(10_500, Duration::ZERO), Duration::ZERO);
        for now in [0, 1, 499, 999, 12_345] {
            for delay in [1, 250, 999, 1_000, 1_001, 4_321] {
                let secs = whole_seconds_after(now, Duration::from_millis(delay)).as_secs() as i64;
                let run_at_ms = (now / 1000 + secs) * 1000;
                assert!(run_at_ms >= now + delay as i64, "now {now} delay {delay}: runs at {run_at_ms}");
                assert!(run_at_ms < now + delay as i64 + 1000, "now {now} delay {delay}: a whole second late");
            }
        }
    }
}
