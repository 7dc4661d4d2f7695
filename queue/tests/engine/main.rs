//! One queue test suite for both stores: every test runs on SQLite (`…::sqlite`), on
//! a real Redis (`…::redis`) and on a Redis Cluster (`…::redis_cluster`, at
//! `TEST_REDIS_CLUSTER_URL`, e.g. the one `scripts/redis-cluster` starts). Each test owns
//! a queue of its own name (a SQLite file, or Redis keys) and removes it when it ends.
//! Without Redis (or without a cluster URL) those runs say so and pass, unless
//! PETPORTRAIT_REQUIRE_SERVICES=1 (CI), where a missing server fails them.

use std::future::Future;
use std::time::Duration;

use petportrait_queue::{QueueConfig, RedisQueue, RedisTarget, SqliteQueue, Store};

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

tokio::task_local! {
    /// Set for a test's `redis_cluster` run: its queue opens on the cluster.
    pub static ON_CLUSTER: bool;
}

/// Runs each named generic test on both stores: `name::sqlite`, `name::redis` and
/// `name::redis_cluster`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name::<petportrait_queue::SqliteQueue>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name::<petportrait_queue::RedisQueue>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_cluster() {
                crate::ON_CLUSTER.scope(true, super::$name::<petportrait_queue::RedisQueue>()).await
            }
        }
    )*};
}

/// Whether a missing server fails the tests that need it (CI) rather than skipping them.
fn required() -> bool {
    std::env::var("PETPORTRAIT_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// How a test opens (and cleans up) a queue of its own on one store.
pub trait TestStore: Store + Sized {
    /// `None` (after saying why) when the store cannot be reached and is not required.
    fn open(config: QueueConfig) -> impl Future<Output = Option<Self>> + Send;
    /// Another handle on the same queue with a different configuration.
    fn sibling(&self, config: QueueConfig) -> impl Future<Output = Self> + Send;
    /// Removes what the test left, from outside its runtime.
    fn clean_up(&self);
}

impl TestStore for RedisQueue {
    async fn open(config: QueueConfig) -> Option<RedisQueue> {
        let url = if ON_CLUSTER.try_with(|on| *on).unwrap_or(false) {
            match std::env::var("TEST_REDIS_CLUSTER_URL") {
                Ok(url) => url,
                Err(_) if required() => panic!("PETPORTRAIT_REQUIRE_SERVICES=1 but TEST_REDIS_CLUSTER_URL is not set"),
                Err(_) => {
                    eprintln!("NOT RUN: TEST_REDIS_CLUSTER_URL is not set (scripts/redis-cluster starts a cluster)");
                    return None;
                }
            }
        } else {
            redis_url()
        };
        let target = match RedisTarget::parse(&url, false) {
            Ok(target) => target,
            Err(error) => panic!("{url} is not a Redis URL: {error}"),
        };
        match RedisQueue::connect_to(target, config).await {
            Ok(queue) if queue.ping().await.is_ok() => Some(queue),
            _ if required() => panic!("Redis at {url} does not answer and PETPORTRAIT_REQUIRE_SERVICES=1"),
            _ => {
                eprintln!("NOT RUN: Redis at {url} does not answer");
                None
            }
        }
    }

    async fn sibling(&self, config: QueueConfig) -> RedisQueue {
        RedisQueue::connect_to(self.target().clone(), config).await.expect("second handle")
    }

    fn clean_up(&self) {
        let config = self.config().clone();
        let target = self.target().clone();
        // Drop runs inside the test's runtime, which cannot block on itself, and the
        // queue's connection belongs to that runtime: clean up with a new one.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let queue = RedisQueue::connect_to(target, config).await.expect("connect for clean-up");
                queue.remove_all().await.expect("clean-up");
            });
        })
        .join()
        .ok();
    }
}

impl TestStore for SqliteQueue {
    async fn open(config: QueueConfig) -> Option<SqliteQueue> {
        let path = std::env::temp_dir().join(format!("{}.sqlite", config.name));
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("sqlite");
        Some(SqliteQueue::connect(pool, config).await.expect("queue tables"))
    }

    async fn sibling(&self, config: QueueConfig) -> SqliteQueue {
        SqliteQueue::connect(self.pool().clone(), config).await.expect("second handle")
    }

    fn clean_up(&self) {
        let path = std::env::temp_dir().join(format!("{}.sqlite", self.config().name));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

/// A queue of its own for one test; its data goes when it is dropped.
pub struct TestQueue<S: TestStore> {
    pub queue: S,
}

impl<S: TestStore> TestQueue<S> {
    pub async fn new(tune: impl FnOnce(&mut QueueConfig)) -> Option<TestQueue<S>> {
        let mut config = QueueConfig::new(format!("pp-test-q-{:012x}", rand::random::<u64>() >> 16));
        config.response_timeout = Duration::from_secs(2);
        tune(&mut config);
        S::open(config).await.map(|queue| TestQueue { queue })
    }

    pub async fn sibling(&self, tune: impl FnOnce(&mut QueueConfig)) -> S {
        let mut config = self.queue.config().clone();
        tune(&mut config);
        self.queue.sibling(config).await
    }
}

impl<S: TestStore> Drop for TestQueue<S> {
    fn drop(&mut self) {
        self.queue.clean_up();
    }
}

/// Polls `check` every few milliseconds until it holds or `deadline` passes.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

mod low_level;
mod model;
mod proxy;
mod workers;
