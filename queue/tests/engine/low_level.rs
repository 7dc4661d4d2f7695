//! The queue's operations one by one: leases, outcomes, delays, idempotency, the dead
//! set and retention.

use std::time::Duration;

use petportrait_queue::{JobState, NewJob, Outcome, Retention, Settlement, Store};

use crate::{TestQueue, TestStore, wait_until};

on_both_stores!(
    a_lapsed_lease_hands_only_that_job_to_another_worker,
    delayed_jobs_wait_their_time_in_milliseconds,
    an_idempotency_key_or_id_admits_one_job,
    retries_wait_and_the_last_failure_goes_to_the_dead_set_for_replay,
    finished_jobs_are_trimmed_to_the_retention,
    a_push_wakes_a_waiting_worker_at_once,
);

fn settle(id: &str, attempt: u32, outcome: Outcome) -> Settlement {
    Settlement { id: id.to_owned(), attempt, outcome }
}

async fn a_lapsed_lease_hands_only_that_job_to_another_worker<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|c| c.lease = Duration::from_millis(300)).await else { return };
    let queue = &test.queue;
    queue.push(vec![NewJob::new("a").id("a"), NewJob::new("b").id("b")]).await.expect("push");

    let first = queue.fetch("worker-1", 10).await.expect("fetch");
    assert_eq!(first.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(first.jobs.iter().all(|j| j.attempt == 1));

    // worker-1 keeps renewing "a" but not "b": only "b" lapses.
    wait_until(Duration::from_secs(5), "b's lease to lapse and b to be handed over", || async {
        assert!(queue.renew("worker-1", &[("a".to_owned(), 1)]).await.expect("renew").is_empty());
        let again = queue.fetch("worker-2", 10).await.expect("fetch");
        assert!(again.jobs.iter().all(|j| j.id == "b" && j.attempt == 2), "{:?}", again.jobs);
        !again.jobs.is_empty()
    })
    .await;

    // The first holder's outcome for "b" is stale and ignored; the new holder's counts.
    let recorded = queue.settle("worker-1", &[settle("b", 1, Outcome::Done(String::new()))]).await.expect("settle");
    assert_eq!(recorded, [false]);
    assert_eq!(queue.state("b").await.expect("state"), Some(JobState::Active));
    let recorded = queue.settle("worker-2", &[settle("b", 2, Outcome::Done(String::new()))]).await.expect("settle");
    assert_eq!(recorded, [true]);
    // ... and acknowledging it a second time does nothing.
    let recorded = queue.settle("worker-2", &[settle("b", 2, Outcome::Done(String::new()))]).await.expect("settle");
    assert_eq!(recorded, [false]);
    assert_eq!(queue.state("b").await.expect("state"), Some(JobState::Done));
    assert_eq!(queue.state("a").await.expect("state"), Some(JobState::Active));
    assert_eq!(queue.renew("worker-2", &[("a".to_owned(), 1)]).await.expect("renew"), ["a"]);
}

async fn delayed_jobs_wait_their_time_in_milliseconds<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|_| {}).await else { return };
    let queue = &test.queue;
    let pushed_at = tokio::time::Instant::now();
    queue.push(vec![NewJob::new("x").id("late").after(Duration::from_millis(400))]).await.expect("push");
    let fetched = queue.fetch("w", 1).await.expect("fetch");
    assert!(fetched.jobs.is_empty());
    let wake_in = fetched.wake_in.expect("the fetch says when the delayed job is due");
    assert!(wake_in > Duration::from_millis(300) && wake_in <= Duration::from_millis(401), "{wake_in:?}");
    assert_eq!(queue.state("late").await.expect("state"), Some(JobState::Delayed));
    wait_until(Duration::from_secs(3), "the delayed job", || async {
        !queue.fetch("w", 1).await.expect("fetch").jobs.is_empty()
    })
    .await;
    let waited = pushed_at.elapsed();
    assert!(waited >= Duration::from_millis(400), "ran after {waited:?}");
    assert!(waited < Duration::from_millis(700), "ran only after {waited:?}");
}

async fn an_idempotency_key_or_id_admits_one_job<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|_| {}).await else { return };
    let queue = &test.queue;
    let pushed = queue
        .push(vec![
            NewJob::new("1").idempotency_key("gen-1:create"),
            NewJob::new("2").idempotency_key("gen-1:create"),
            NewJob::new("3").idempotency_key("gen-1:try-2"),
            NewJob::new("4").id("fixed"),
            NewJob::new("5").id("fixed"),
        ])
        .await
        .expect("push");
    assert_eq!(pushed.iter().map(|p| p.added).collect::<Vec<_>>(), [true, false, true, true, false]);
    assert_eq!(queue.counts().await.expect("counts").ready, 3);
}

async fn retries_wait_and_the_last_failure_goes_to_the_dead_set_for_replay<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|_| {}).await else { return };
    let queue = &test.queue;
    queue.push(vec![NewJob::new("p").id("j").max_attempts(2)]).await.expect("push");

    let job = queue.fetch("w", 1).await.expect("fetch").jobs.remove(0);
    let retry = Outcome::Retry { after: Duration::from_millis(200), error: "flaky".into() };
    assert_eq!(queue.settle("w", &[settle("j", job.attempt, retry)]).await.expect("settle"), [true]);
    assert_eq!(queue.state("j").await.expect("state"), Some(JobState::Delayed));
    assert!(queue.fetch("w", 1).await.expect("fetch").jobs.is_empty(), "a retry waits its backoff");

    let second = std::sync::Mutex::new(None);
    wait_until(Duration::from_secs(3), "the retry", || async {
        let job = queue.fetch("w", 1).await.expect("fetch").jobs.pop();
        let found = job.is_some();
        *second.lock().expect("lock") = job;
        found
    })
    .await;
    let second = second.into_inner().expect("lock").expect("retried");
    assert_eq!((second.attempt, second.max_attempts), (2, 2));
    let dead = Outcome::Dead("still flaky".into());
    assert_eq!(queue.settle("w", &[settle("j", 2, dead)]).await.expect("settle"), [true]);

    let dead = queue.dead_jobs(0, 10).await.expect("dead set");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].attempts, dead[0].error.as_str()), ("j", 2, "still flaky"));
    assert_eq!(dead[0].payload, b"p");

    assert_eq!(queue.replay(&["j".to_owned()]).await.expect("replay"), 1);
    let replayed = queue.fetch("w", 1).await.expect("fetch").jobs.remove(0);
    assert_eq!(replayed.attempt, 1, "a replayed job starts its attempts afresh");
    assert_eq!(queue.settle("w", &[settle("j", 1, Outcome::Dead("again".into()))]).await.expect("settle"), [true]);

    // Replay-all and purge work through the whole set in bounded batches.
    let many: Vec<NewJob> = (0..30).map(|i| NewJob::new("x").id(format!("m{i}")).max_attempts(1)).collect();
    queue.push(many).await.expect("push");
    let taken = queue.fetch("w", 100).await.expect("fetch").jobs;
    let deaths: Vec<Settlement> = taken.iter().map(|j| settle(&j.id, 1, Outcome::Dead("no".into()))).collect();
    queue.settle("w", &deaths).await.expect("settle");
    assert_eq!(queue.counts().await.expect("counts").dead, 31);
    assert_eq!(queue.replay_all().await.expect("replay all"), 31);
    assert_eq!(queue.counts().await.expect("counts").ready, 31);
    let taken = queue.fetch("w", 100).await.expect("fetch").jobs;
    let deaths: Vec<Settlement> = taken.iter().map(|j| settle(&j.id, 1, Outcome::Dead("no".into()))).collect();
    queue.settle("w", &deaths).await.expect("settle");
    assert_eq!(queue.purge_dead().await.expect("purge"), 31);
    assert_eq!(queue.counts().await.expect("counts"), Default::default());
    assert_eq!(queue.state("j").await.expect("state"), None);
}

async fn finished_jobs_are_trimmed_to_the_retention<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|c| c.keep_done = Retention { count: 10, age: Duration::from_secs(60) }).await
    else {
        return;
    };
    let queue = &test.queue;
    let jobs: Vec<NewJob> = (0..100).map(|i| NewJob::new(vec![b'x'; 100]).id(format!("d{i:03}"))).collect();
    queue.push(jobs).await.expect("push");
    for _ in 0..10 {
        let taken = queue.fetch("w", 10).await.expect("fetch").jobs;
        let done: Vec<Settlement> = taken.iter().map(|j| settle(&j.id, 1, Outcome::Done("ok".into()))).collect();
        queue.settle("w", &done).await.expect("settle");
    }
    let counts = queue.counts().await.expect("counts");
    assert_eq!((counts.ready, counts.active, counts.done), (0, 0, 10));
    assert_eq!(queue.state("d000").await.expect("state"), None, "the oldest records are gone");
    assert_eq!(queue.state("d099").await.expect("state"), Some(JobState::Done));
    // Nothing else lingers. Redis: the done set, the results hash and the wake-up marker
    // (finished jobs keep no hash); SQLite: the ten rows.
    assert!(queue.remove_all().await.expect("keys or rows") <= 10);
}

async fn a_push_wakes_a_waiting_worker_at_once<S: TestStore>() {
    let Some(test) = TestQueue::<S>::new(|c| c.max_idle_wait = Duration::from_secs(5)).await else { return };
    let queue = test.queue.clone();
    let waiter = tokio::spawn({
        let queue = queue.clone();
        async move {
            let mut waiter = queue.waiter().await.expect("waiter");
            queue.wait_for_work(&mut waiter, Duration::from_secs(5)).await.expect("wait")
        }
    });
    assert!(!waiter.is_finished(), "nothing signalled work before the push");
    let pushed_at = tokio::time::Instant::now();
    queue.push(vec![NewJob::new("go")]).await.expect("push");
    let woken = waiter.await.expect("waiter");
    let after_push = pushed_at.elapsed();
    assert!(woken, "the push signalled work");
    assert!(after_push < Duration::from_secs(1), "woken by the push, not the timeout: {after_push:?}");
}

/// Redis only: an answer lost on the network is what a retried fetch recovers (SQLite
/// answers in-process; a failed transaction leased nothing).
mod a_retried_fetch_hands_out_the_same_jobs {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        super::a_retried_fetch_hands_out_the_same_jobs().await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_cluster() {
        crate::ON_CLUSTER.scope(true, super::a_retried_fetch_hands_out_the_same_jobs()).await
    }
}

async fn a_retried_fetch_hands_out_the_same_jobs() {
    let Some(test) = TestQueue::<petportrait_queue::RedisQueue>::new(|_| {}).await else { return };
    let queue = &test.queue;
    queue.push((0..5).map(|i| NewJob::new("r").id(format!("r{i}"))).collect()).await.expect("push");
    let ids = |fetched: &petportrait_queue::Fetched| fetched.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();

    let first = queue.fetch_once("w", 2, "fetch-1", None).await.expect("fetch");
    // The answer "was lost": the same call again hands out the same jobs, same attempt.
    let again = queue.fetch_once("w", 2, "fetch-1", None).await.expect("retry");
    assert_eq!(ids(&again), ids(&first));
    assert!(again.jobs.iter().all(|j| j.attempt == 1));
    // Another worker retrying under the same id gets nothing of this worker's.
    let other = queue.fetch_once("v", 2, "fetch-1", None).await.expect("other");
    assert!(other.jobs.is_empty(), "{:?}", other.jobs);
    // Once answered, the record is forgotten and new fetches take new jobs.
    let next = queue.fetch_once("w", 2, "fetch-2", Some("fetch-1")).await.expect("next");
    assert_eq!(ids(&next), ["r2", "r3"]);
    let after = queue.fetch_once("w", 2, "fetch-1", Some("fetch-2")).await.expect("after");
    assert_eq!(ids(&after), ["r4"], "fetch-1 was forgotten, so it fetches anew");
    assert_eq!(queue.counts().await.expect("counts").active, 5);
}
