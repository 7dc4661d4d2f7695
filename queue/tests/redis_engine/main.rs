//! The engine against a real Redis. Each test owns a queue of its own name and removes
//! its keys when it ends. Without Redis the tests say so and pass, unless
//! PETPORTRAIT_REQUIRE_SERVICES=1 (CI), where a missing Redis fails them.

mod low_level;
mod model;
mod proxy;
mod workers;

use std::future::Future;
use std::time::Duration;

use petportrait_queue::{QueueConfig, RedisQueue};

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A queue of its own for one test; its keys go when it is dropped.
pub struct TestQueue {
    pub queue: RedisQueue,
}

impl TestQueue {
    /// `None` (after saying why) when Redis does not answer and it is not required.
    pub async fn new(tune: impl FnOnce(&mut QueueConfig)) -> Option<TestQueue> {
        let mut config = QueueConfig::new(format!("pp-test-q-{:012x}", rand::random::<u64>() >> 16));
        config.response_timeout = Duration::from_secs(2);
        tune(&mut config);
        match RedisQueue::connect(&redis_url(), config).await {
            Ok(queue) if queue.ping().await.is_ok() => Some(TestQueue { queue }),
            Ok(_) | Err(_) if std::env::var("PETPORTRAIT_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("Redis at {} does not answer and PETPORTRAIT_REQUIRE_SERVICES=1", redis_url())
            }
            _ => {
                eprintln!("NOT RUN: Redis at {} does not answer", redis_url());
                None
            }
        }
    }

    /// Another handle on the same queue with a different configuration.
    pub async fn sibling(&self, tune: impl FnOnce(&mut QueueConfig)) -> RedisQueue {
        let mut config = self.queue.config().clone();
        tune(&mut config);
        RedisQueue::connect(&redis_url(), config).await.expect("second handle")
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let config = self.queue.config().clone();
        // Drop runs inside the test's runtime, which cannot block on itself, and the
        // queue's connection belongs to that runtime: clean up with a new one.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let queue = RedisQueue::connect(&redis_url(), config).await.expect("connect for clean-up");
                queue.remove_all().await.expect("clean-up");
            });
        })
        .join()
        .ok();
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
