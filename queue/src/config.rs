//! How a queue behaves. Every limit that bounds memory or a script's cost lives here.

use std::time::Duration;

/// How many finished (or dead) jobs a queue keeps for inspection, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub count: usize,
    pub age: Duration,
}

/// Exponential backoff with equal jitter between attempts (see [`crate::backoff_delay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// The queue's name; every key is `{name}:…`, so all of a queue's keys share one
    /// Redis Cluster hash slot.
    pub name: String,
    /// A job whose worker stops renewing its lease for this long is handed to another
    /// worker. Renewals happen every third of it.
    pub lease: Duration,
    /// Attempts of a job pushed without its own maximum.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Jobs fetched ahead of free handler slots (0: fetch only for free slots, so a
    /// long job never holds a waiting one back while another worker is idle).
    pub prefetch: usize,
    /// The most jobs one fetch takes.
    pub fetch_batch: usize,
    /// The most outcomes one round trip records.
    pub settle_batch: usize,
    pub keep_done: Retention,
    pub keep_dead: Retention,
    pub idempotency_ttl: Duration,
    /// The longest an idle worker blocks before it looks again on its own.
    pub max_idle_wait: Duration,
    /// Bounds on the work one fetch does for due delayed jobs and lapsed leases.
    pub promote_batch: usize,
    pub reap_batch: usize,
    /// Per-command deadline (the blocking wait gets its own, longer one).
    pub response_timeout: Duration,
}

impl QueueConfig {
    pub fn new(name: impl Into<String>) -> QueueConfig {
        QueueConfig {
            name: name.into(),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Backoff { base: Duration::from_secs(1), max: Duration::from_secs(300) },
            prefetch: 0,
            fetch_batch: 200,
            settle_batch: 500,
            keep_done: Retention { count: 1_000, age: Duration::from_secs(3_600) },
            keep_dead: Retention { count: 10_000, age: Duration::from_secs(7 * 86_400) },
            idempotency_ttl: Duration::from_secs(86_400),
            max_idle_wait: Duration::from_secs(5),
            promote_batch: 1_000,
            reap_batch: 200,
            response_timeout: Duration::from_secs(5),
        }
    }
}
