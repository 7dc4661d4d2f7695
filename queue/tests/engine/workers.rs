//! The engine under real apalis workers: delivery, retries decided by the settle layer,
//! graceful drain and surviving a Redis hiccup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use petportrait_queue::{JobState, NewJob, QueueBackend, RedisQueue, Store};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{TestQueue, TestStore, wait_until};

on_both_stores!(
    a_handlers_result_is_kept_with_its_outcome,
    every_job_is_delivered_once_across_two_workers,
    failures_retry_with_backoff_up_to_the_jobs_maximum,
    a_stopping_worker_finishes_running_jobs_and_hands_back_the_rest,
);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    n: u64,
}

/// What the handlers saw: each job's attempts, in order, and when they started.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<u64, Runs>>>);

/// One job's runs: the attempt number and when it started.
type Runs = Vec<(usize, tokio::time::Instant)>;

impl Seen {
    fn record(&self, n: u64, attempt: usize) {
        self.0.lock().expect("lock").entry(n).or_default().push((attempt, tokio::time::Instant::now()));
    }
    fn runs(&self) -> HashMap<u64, Runs> {
        self.0.lock().expect("lock").clone()
    }
    fn total(&self) -> usize {
        self.0.lock().expect("lock").values().map(Vec::len).sum()
    }
}

fn jobs(range: std::ops::Range<u64>) -> Vec<NewJob> {
    range.map(|n| NewJob::new(serde_json::to_vec(&Job { n }).expect("json")).id(format!("job-{n}"))).collect()
}

/// Runs a worker until `stop` is cancelled, in the background.
fn spawn_worker<S: Store, F, Fut>(
    queue: &S,
    concurrency: usize,
    stop: CancellationToken,
    handler: F,
) -> tokio::task::JoinHandle<Result<(), WorkerError>>
where
    F: Fn(Job, Attempt) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let worker = WorkerBuilder::new(format!("test-{:x}", rand::random::<u32>()))
        .backend(QueueBackend::<S, Job>::new(queue.clone(), concurrency))
        .concurrency(concurrency)
        .parallelize(tokio::spawn)
        .build(move |job: Job, attempt: Attempt| {
            let handler = handler.clone();
            async move { handler(job, attempt).await }
        });
    tokio::spawn(worker.run_until(async move {
        stop.cancelled().await;
        Ok::<(), std::io::Error>(())
    }))
}

async fn every_job_is_delivered_once_across_two_workers<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|_| {}).await else { return };
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let handler = {
        let seen = seen.clone();
        move |job: Job, attempt: Attempt| {
            let seen = seen.clone();
            async move {
                seen.record(job.n, attempt.current());
                Ok(())
            }
        }
    };
    let one = spawn_worker(&test.queue, 8, stop.clone(), handler.clone());
    let two = spawn_worker(&test.queue, 3, stop.clone(), handler);
    test.queue.push(jobs(0..1_000)).await.expect("push");
    test.queue.push(jobs(1_000..2_000)).await.expect("push");
    wait_until(Duration::from_secs(20), "2,000 jobs", || async { seen.total() >= 2_000 }).await;
    wait_until(Duration::from_secs(5), "outcomes recorded", || async {
        let counts = test.queue.counts().await.expect("counts");
        counts.ready == 0 && counts.active == 0
    })
    .await;
    stop.cancel();
    one.await.expect("join").expect("worker one");
    two.await.expect("join").expect("worker two");
    let runs = seen.runs();
    assert_eq!(runs.len(), 2_000);
    assert!(runs.values().all(|r| r.len() == 1 && r[0].0 == 1), "each job ran once, on its first attempt");
}

async fn failures_retry_with_backoff_up_to_the_jobs_maximum<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|c| {
        c.backoff.base = Duration::from_millis(200);
        c.max_attempts = 3;
    })
    .await
    else {
        return;
    };
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let worker = spawn_worker(&test.queue, 2, stop.clone(), {
        let seen = seen.clone();
        move |job: Job, attempt: Attempt| {
            let seen = seen.clone();
            async move {
                seen.record(job.n, attempt.current());
                match job.n {
                    // Job 0 succeeds on its third attempt; job 1 never does.
                    0 if attempt.current() >= 3 => Ok(()),
                    _ => Err("model unavailable".into()),
                }
            }
        }
    });
    test.queue.push(jobs(0..2)).await.expect("push");
    wait_until(Duration::from_secs(10), "job 1 to die", || async {
        test.queue.state("job-1").await.expect("state") == Some(JobState::Dead)
    })
    .await;
    wait_until(Duration::from_secs(10), "job 0 to finish", || async {
        test.queue.state("job-0").await.expect("state") == Some(JobState::Done)
    })
    .await;
    stop.cancel();
    worker.await.expect("join").expect("worker");
    let runs = seen.runs();
    for n in [0, 1] {
        let attempts: Vec<usize> = runs[&n].iter().map(|r| r.0).collect();
        assert_eq!(attempts, [1, 2, 3], "job {n}");
        // Backoff 200 ms then 400 ms, each at least half of it (equal jitter).
        let gaps: Vec<Duration> = runs[&n].windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert!(gaps[0] >= Duration::from_millis(100) && gaps[1] >= Duration::from_millis(200), "{gaps:?}");
    }
    let dead = test.queue.dead_jobs(0, 10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].error.contains("model unavailable"), "{}", dead[0].error);
}

async fn a_stopping_worker_finishes_running_jobs_and_hands_back_the_rest<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|c| c.prefetch = 2).await else { return };
    let started = Seen::default();
    let finished = Seen::default();
    let stop = CancellationToken::new();
    let worker = spawn_worker(&test.queue, 2, stop.clone(), {
        let (started, finished) = (started.clone(), finished.clone());
        move |job: Job, attempt: Attempt| {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                started.record(job.n, attempt.current());
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.record(job.n, attempt.current());
                Ok(())
            }
        }
    });
    test.queue.push(jobs(0..6)).await.expect("push");
    wait_until(Duration::from_secs(5), "two jobs running and two prefetched", || async {
        started.total() == 2 && test.queue.counts().await.expect("counts").active == 4
    })
    .await;
    stop.cancel();
    worker.await.expect("join").expect("worker");
    assert_eq!(finished.total(), 2, "the running jobs finished");
    let counts = test.queue.counts().await.expect("counts");
    assert_eq!((counts.active, counts.ready, counts.done), (0, 4, 2), "{counts:?}");
    // The handed-back jobs did not use up an attempt.
    let next = test.queue.fetch("w", 10).await.expect("fetch").jobs;
    assert_eq!(next.len(), 4);
    assert!(next.iter().all(|j| j.attempt == 1), "{next:?}");
}

/// Redis only: SQLite has no connection to lose (the store is a file in the process).
mod workers_survive_their_redis_connections_being_cut {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        super::workers_survive_their_redis_connections_being_cut().await
    }
}

async fn workers_survive_their_redis_connections_being_cut() {
    let Some(test) = TestQueue::<RedisQueue>::new(|_| {}).await else { return };
    // The worker reaches Redis through a proxy that can cut its connections, so the
    // hiccup hits this test's worker and nobody else using the same Redis.
    let proxy = crate::proxy::Proxy::start(&crate::redis_url()).await;
    let through_proxy = RedisQueue::connect(&proxy.url(), test.queue.config().clone()).await.expect("via proxy");
    let seen = Seen::default();
    let stop = CancellationToken::new();
    let worker = spawn_worker(&through_proxy, 4, stop.clone(), {
        let seen = seen.clone();
        move |job: Job, attempt: Attempt| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                seen.record(job.n, attempt.current());
                Ok(())
            }
        }
    });
    test.queue.push(jobs(0..300)).await.expect("push");
    wait_until(Duration::from_secs(10), "some progress", || async { seen.total() >= 50 }).await;
    let cut = proxy.cut();
    assert!(cut >= 1, "the worker's connections were cut ({cut})");
    test.queue.push(jobs(300..400)).await.expect("push");
    wait_until(Duration::from_secs(20), "every job", || async { seen.runs().len() == 400 }).await;
    wait_until(Duration::from_secs(10), "outcomes recorded", || async {
        let counts = test.queue.counts().await.expect("counts");
        counts.ready == 0 && counts.active == 0 && counts.delayed == 0
    })
    .await;
    assert!(!worker.is_finished(), "the worker is still running");
    assert!(proxy.connections() > cut, "the worker reconnected");
    stop.cancel();
    worker.await.expect("join").expect("worker");
}

async fn a_handlers_result_is_kept_with_its_outcome<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|_| {}).await else { return };
    let stop = CancellationToken::new();
    let worker = WorkerBuilder::new(format!("test-{:x}", rand::random::<u32>()))
        .backend(QueueBackend::<S, Job>::new(test.queue.clone(), 2))
        .concurrency(2)
        .build(|job: Job| async move { Ok::<_, BoxDynError>(format!("portrait of {}", job.n)) });
    let running = tokio::spawn(worker.run_until({
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            Ok::<(), std::io::Error>(())
        }
    }));
    test.queue.push(jobs(41..43)).await.expect("push");
    wait_until(Duration::from_secs(10), "both results", || async {
        test.queue.result("job-42").await.expect("result").is_some()
            && test.queue.result("job-41").await.expect("result").is_some()
    })
    .await;
    assert_eq!(test.queue.result("job-42").await.expect("result").as_deref(), Some("\"portrait of 42\""));
    assert_eq!(test.queue.state("job-42").await.expect("state"), Some(JobState::Done));
    stop.cancel();
    running.await.expect("join").expect("worker");
}
