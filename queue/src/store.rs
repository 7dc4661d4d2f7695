//! What every queue store speaks: the jobs going in, the deliveries coming out, their
//! outcomes, and the [`Store`] trait the apalis backend drives. Redis
//! ([`crate::RedisQueue`]) and SQLite ([`crate::SqliteQueue`]) implement it with the
//! same meaning, and one test suite holds both to it.

use std::future::Future;
use std::time::Duration;

use crate::config::QueueConfig;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("Redis call failed")]
    Redis(#[from] redis::RedisError),
    #[error("SQLite call failed")]
    Sqlite(#[from] sqlx::Error),
    #[error("a queue script answered something unexpected: {0}")]
    Reply(&'static str),
}

/// A job to push. Without an id one is generated (a ULID).
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    pub id: Option<String>,
    pub payload: Vec<u8>,
    pub delay: Duration,
    pub max_attempts: Option<u32>,
    pub idempotency_key: Option<String>,
}

impl NewJob {
    pub fn new(payload: impl Into<Vec<u8>>) -> NewJob {
        NewJob { payload: payload.into(), ..NewJob::default() }
    }
    pub fn id(mut self, id: impl Into<String>) -> NewJob {
        self.id = Some(id.into());
        self
    }
    pub fn after(mut self, delay: Duration) -> NewJob {
        self.delay = delay;
        self
    }
    pub fn max_attempts(mut self, attempts: u32) -> NewJob {
        self.max_attempts = Some(attempts);
        self
    }
    pub fn idempotency_key(mut self, key: impl Into<String>) -> NewJob {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// What a push did with one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub id: String,
    /// `false` when a job with this id or idempotency key already existed.
    pub added: bool,
}

/// One job handed to a worker under a lease.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub payload: Vec<u8>,
    /// 1 on the first delivery.
    pub attempt: u32,
    pub max_attempts: u32,
}

#[derive(Debug, Default)]
pub struct Fetched {
    pub jobs: Vec<Delivery>,
    /// When the next delayed job is due or the next lease lapses, if any.
    pub wake_in: Option<Duration>,
    /// Jobs still waiting in the ready list after this fetch.
    pub ready_left: u64,
}

/// The outcome of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished; the text is the handler's result, kept with the job for the retention.
    Done(String),
    /// Failed; run again after the delay.
    Retry { after: Duration, error: String },
    /// Failed for good (aborted, or out of attempts): moved to the dead set.
    Dead(String),
    /// Never started (the worker is stopping): back to the ready list, attempt not counted.
    Release,
}

#[derive(Clone, Debug)]
pub struct Settlement {
    pub id: String,
    pub attempt: u32,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Ready,
    Delayed,
    Active,
    Done,
    Dead,
}

impl JobState {
    /// The state's name as both stores write it.
    pub fn parse(name: &str) -> Option<JobState> {
        match name {
            "ready" => Some(JobState::Ready),
            "delayed" => Some(JobState::Delayed),
            "active" => Some(JobState::Active),
            "done" => Some(JobState::Done),
            "dead" => Some(JobState::Dead),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct DeadJob {
    pub id: String,
    pub attempts: u32,
    pub error: String,
    pub died_at_ms: i64,
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub ready: u64,
    pub delayed: u64,
    pub active: u64,
    pub dead: u64,
    pub done: u64,
}

/// A queue's storage. Every method is one round trip (one script or transaction), and
/// none does work that grows with the number of jobs the queue holds.
pub trait Store: Clone + Send + Sync + Unpin + 'static {
    /// What an idle worker blocks on until work may be there.
    type Waiter: Send + 'static;

    fn config(&self) -> &QueueConfig;

    /// Adds jobs; those whose id or idempotency key exists are skipped (`added: false`).
    fn push(&self, jobs: Vec<NewJob>) -> impl Future<Output = Result<Vec<Pushed>, QueueError>> + Send;

    /// Takes up to `count` jobs for `owner` under a lease, after returning lapsed leases
    /// and due delayed jobs (in bounded batches) to the ready line. Calling it again
    /// with the same `fetch_id` after an error hands out the jobs the first call leased
    /// (its answer may have been lost on the way), not new ones. `answered` names the
    /// caller's previous fetch, whose answer arrived: the store may forget it.
    fn fetch_once(
        &self,
        owner: &str,
        count: usize,
        fetch_id: &str,
        answered: Option<&str>,
    ) -> impl Future<Output = Result<Fetched, QueueError>> + Send;

    /// A fetch that will not be retried (so the store need not remember it).
    fn fetch(&self, owner: &str, count: usize) -> impl Future<Output = Result<Fetched, QueueError>> + Send {
        async move { self.fetch_once(owner, count, "", None).await }
    }

    /// Records outcomes; `false` for a delivery whose lease `owner` no longer holds.
    fn settle(
        &self,
        owner: &str,
        settlements: &[Settlement],
    ) -> impl Future<Output = Result<Vec<bool>, QueueError>> + Send;

    /// Extends the leases `owner` holds; returns the ids it no longer holds.
    fn renew(
        &self,
        owner: &str,
        held: &[(String, u32)],
    ) -> impl Future<Output = Result<Vec<String>, QueueError>> + Send;

    fn waiter(&self) -> impl Future<Output = Result<Self::Waiter, QueueError>> + Send;

    /// Blocks until a push signals work or `timeout` passes; whether it was signalled.
    fn wait_for_work(
        &self,
        waiter: &mut Self::Waiter,
        timeout: Duration,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send;

    /// Where a job is; `None` once its record is past the retention (or never existed).
    fn state(&self, id: &str) -> impl Future<Output = Result<Option<JobState>, QueueError>> + Send;
    /// A finished job's result (its handler's return value as JSON), while retained.
    fn result(&self, id: &str) -> impl Future<Output = Result<Option<String>, QueueError>> + Send;
    fn counts(&self) -> impl Future<Output = Result<Counts, QueueError>> + Send;
    /// The dead set, oldest first.
    fn dead_jobs(&self, offset: usize, limit: usize) -> impl Future<Output = Result<Vec<DeadJob>, QueueError>> + Send;
    /// Puts dead jobs back in line with their attempts reset.
    fn replay(&self, ids: &[String]) -> impl Future<Output = Result<u64, QueueError>> + Send;
    fn replay_all(&self) -> impl Future<Output = Result<u64, QueueError>> + Send;
    fn purge_dead(&self) -> impl Future<Output = Result<u64, QueueError>> + Send;
    /// Removes the records of jobs that finished more than `older_than` ago.
    fn forget_finished(&self, older_than: Duration) -> impl Future<Output = Result<u64, QueueError>> + Send;
    fn ping(&self) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Deletes everything of this queue (tests and benchmarks start from nothing).
    fn remove_all(&self) -> impl Future<Output = Result<u64, QueueError>> + Send;
}
