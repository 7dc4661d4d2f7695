//! Property-style check: random sequences of push, fetch, settle (done, retry, dead),
//! duplicate settles, crashes (leases left to lapse) and replays, from fixed seeds.
//! Afterwards every job pushed is finished exactly once: none lost, none acknowledged
//! twice, and each job's deliveries carry increasing attempt numbers.

use std::collections::HashMap;
use std::time::Duration;

use petportrait_queue::{Delivery, NewJob, Outcome, Settlement, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{TestQueue, TestStore};

on_both_stores!(random_sequences_lose_nothing_and_acknowledge_nothing_twice);

const OWNERS: [&str; 3] = ["w0", "w1", "w2"];
/// Fetches through a handle whose lease lapses almost at once: a worker that crashed.
const CRASHY: &str = "crashy";

#[derive(Default)]
struct Model {
    pushed: Vec<String>,
    held: HashMap<&'static str, Vec<Delivery>>,
    settled: Vec<(&'static str, Delivery)>,
    done_acks: HashMap<String, u32>,
    last_attempt: HashMap<String, u32>,
}

impl Model {
    fn delivered(&mut self, owner: &'static str, jobs: Vec<Delivery>) {
        for job in jobs {
            let last = self.last_attempt.insert(job.id.clone(), job.attempt).unwrap_or(0);
            assert!(job.attempt > last || job.attempt == 1, "attempts go up (or restart after a replay): {job:?}");
            self.held.entry(owner).or_default().push(job);
        }
    }

    async fn settle<S: Store>(&mut self, queue: &S, owner: &'static str, job: Delivery, outcome: Outcome) {
        let done = matches!(outcome, Outcome::Done(_));
        let settlement = Settlement { id: job.id.clone(), attempt: job.attempt, outcome };
        let recorded = queue.settle(owner, &[settlement]).await.expect("settle")[0];
        if recorded && done {
            let acks = self.done_acks.entry(job.id.clone()).or_default();
            *acks += 1;
            assert_eq!(*acks, 1, "job {} acknowledged twice", job.id);
        }
        self.settled.push((owner, job));
    }
}

async fn run<S: Store>(seed: u64, queue: &S, crashy: &S) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    for step in 0..250 {
        match rng.random_range(0..100) {
            0..20 => {
                let jobs: Vec<NewJob> = (0..rng.random_range(1..5))
                    .map(|i| NewJob::new("m").id(format!("s{seed}-{step}-{i}")).max_attempts(rng.random_range(1..4)))
                    .collect();
                model.pushed.extend(jobs.iter().filter_map(|j| j.id.clone()));
                queue.push(jobs).await.expect("push");
            }
            20..45 => {
                let owner = OWNERS[rng.random_range(0..OWNERS.len())];
                let jobs = queue.fetch(owner, rng.random_range(1..4)).await.expect("fetch").jobs;
                model.delivered(owner, jobs);
            }
            45..52 => {
                let jobs = crashy.fetch(CRASHY, rng.random_range(1..3)).await.expect("fetch").jobs;
                model.delivered(CRASHY, jobs);
            }
            52..85 => {
                let owner = [OWNERS[0], OWNERS[1], OWNERS[2], CRASHY][rng.random_range(0..4)];
                let held = model.held.entry(owner).or_default();
                if held.is_empty() {
                    continue;
                }
                let job = held.swap_remove(rng.random_range(0..held.len()));
                let outcome = match rng.random_range(0..10) {
                    0..6 => Outcome::Done(String::new()),
                    6..9 => Outcome::Retry { after: Duration::ZERO, error: "flaky".into() },
                    _ => Outcome::Dead("broken".into()),
                };
                model.settle(queue, owner, job, outcome).await;
            }
            85..90 => {
                // A duplicate of an earlier settle: never recorded twice.
                if let Some((owner, job)) = model.settled.get(rng.random_range(0..model.settled.len().max(1))).cloned()
                {
                    model.settle(queue, owner, job, Outcome::Done(String::new())).await;
                }
            }
            90..93 => {
                // A worker crashes: it forgets what it held; the leases lapse.
                model.held.remove(OWNERS[rng.random_range(0..OWNERS.len())]);
            }
            93..95 => {
                let owner = OWNERS[rng.random_range(0..OWNERS.len())];
                let held: Vec<(String, u32)> =
                    model.held.get(owner).into_iter().flatten().map(|j| (j.id.clone(), j.attempt)).collect();
                queue.renew(owner, &held).await.expect("renew");
            }
            _ => {
                queue.replay_all().await.expect("replay");
            }
        }
    }

    // Drain: the live workers finish what they hold, dead jobs are replayed, and a
    // final worker runs whatever is left, until the queue is empty.
    for owner in OWNERS.into_iter().chain([CRASHY]) {
        for job in model.held.remove(owner).unwrap_or_default() {
            model.settle(queue, owner, job, Outcome::Done(String::new())).await;
        }
    }
    for _ in 0..400 {
        queue.replay_all().await.expect("replay");
        let jobs = queue.fetch("final", 100).await.expect("fetch").jobs;
        model.delivered("final", jobs.clone());
        for job in jobs {
            model.held.get_mut("final").expect("held").retain(|j| j.id != job.id);
            model.settle(queue, "final", job, Outcome::Done(String::new())).await;
        }
        let counts = queue.counts().await.expect("counts");
        if counts.ready + counts.delayed + counts.active + counts.dead == 0 {
            break;
        }
        // Crashed workers' leases lapse after 20 ms (crashy) or 150 ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let counts = queue.counts().await.expect("counts");
    assert_eq!(counts.ready + counts.delayed + counts.active + counts.dead, 0, "seed {seed}: drained: {counts:?}");
    for id in &model.pushed {
        assert_eq!(model.done_acks.get(id).copied(), Some(1), "seed {seed}: job {id} finished exactly once");
    }
    assert_eq!(model.done_acks.len(), model.pushed.len(), "seed {seed}: nothing unknown was acknowledged");
}

async fn random_sequences_lose_nothing_and_acknowledge_nothing_twice<S: TestStore>() {
    for seed in 0..12 {
        let Some(test) = TestQueue::<S>::new(|c| {
            c.keep_done.count = 100_000;
            c.lease = Duration::from_millis(150);
        })
        .await
        else {
            return;
        };
        let crashy = test.sibling(|c| c.lease = Duration::from_millis(20)).await;
        run(seed, &test.queue, &crashy).await;
    }
}
