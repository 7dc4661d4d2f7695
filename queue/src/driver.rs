//! The background tasks behind one worker: a fetcher that takes jobs for free handler
//! slots and otherwise blocks until a push signals work, a settler that records
//! outcomes in batches, and a renewer that extends all held leases in one call.
//!
//! None of them ever gives up on a Redis error: each logs it, waits (with backoff) and
//! tries again, so a Redis restart or a timed-out call never stops a worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::errors::error_chain;
use crate::store::{Delivery, Outcome, Settlement, Store};

/// What the settle layer attaches to each task it will report on.
#[derive(Clone, Debug)]
pub struct DeliveryInfo {
    pub id: String,
    pub attempt: u32,
    pub max_attempts: u32,
}

pub(crate) enum SettleMessage {
    Outcome(Settlement),
    /// Answered once every outcome sent before it is recorded.
    Flush(oneshot::Sender<()>),
}

struct Held {
    attempt: u32,
    /// A handler slot, given back as soon as the handler finishes (before its outcome
    /// is written) so the next fetch overlaps with the write.
    slot: Option<OwnedSemaphorePermit>,
}

struct Shared<S> {
    queue: S,
    owner: String,
    held: Mutex<HashMap<String, Held>>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
}

impl<S> Shared<S> {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        // A panic while holding this lock cannot leave the map half-updated (each
        // operation is one insert or remove), so a poisoned lock is still usable.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) struct Driver<S> {
    shared: Arc<Shared<S>>,
    fetcher: JoinHandle<()>,
    settler: JoinHandle<()>,
    renewer: JoinHandle<()>,
    settle_tx: mpsc::UnboundedSender<SettleMessage>,
}

/// Waits for `duration`, or less if the worker is stopping.
async fn pause(stop: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}

fn error_pause(failures: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(3))
}

impl<S: Store> Driver<S> {
    pub(crate) fn start(
        queue: S,
        worker_name: &str,
        concurrency: usize,
        jobs: mpsc::Sender<Task<Vec<u8>>>,
        settle_tx: mpsc::UnboundedSender<SettleMessage>,
        settle_rx: mpsc::UnboundedReceiver<SettleMessage>,
    ) -> Driver<S> {
        let slots = concurrency.max(1) + queue.config().prefetch;
        let shared = Arc::new(Shared {
            owner: format!("{worker_name}:{:016x}", rand::random::<u64>()),
            queue,
            held: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(slots)),
            stop: CancellationToken::new(),
        });
        Driver {
            fetcher: tokio::spawn(fetch_loop(shared.clone(), jobs)),
            settler: tokio::spawn(settle_loop(shared.clone(), settle_rx)),
            renewer: tokio::spawn(renew_loop(shared.clone())),
            shared,
            settle_tx,
        }
    }

    /// Stops fetching, hands back jobs fetched but never started, and waits until
    /// every outcome is recorded.
    pub(crate) async fn close(self, mut unstarted: mpsc::Receiver<Task<Vec<u8>>>) {
        self.shared.stop.cancel();
        // The fetcher finishes a fetch in flight rather than dropping its answer, so
        // the jobs it took are handed back here instead of waiting for their lease.
        let _ = self.fetcher.await;
        unstarted.close();
        while let Some(task) = unstarted.recv().await {
            if let Some(info) = task.ctx().data().get::<DeliveryInfo>() {
                let release = Settlement { id: info.id.clone(), attempt: info.attempt, outcome: Outcome::Release };
                let _ = self.settle_tx.send(SettleMessage::Outcome(release));
            }
        }
        let (done, recorded) = oneshot::channel();
        if self.settle_tx.send(SettleMessage::Flush(done)).is_ok() {
            let _ = recorded.await;
        }
        self.settler.abort();
        self.renewer.abort();
    }
}

fn into_task(job: Delivery) -> Task<Vec<u8>> {
    let info = DeliveryInfo { id: job.id.clone(), attempt: job.attempt, max_attempts: job.max_attempts };
    TaskBuilder::new(job.payload)
        .task_id(TaskId::from_string(job.id))
        // apalis counts the attempt up when the handler starts.
        .attempt(job.attempt.saturating_sub(1) as usize)
        .max_attempts(job.max_attempts as usize)
        .data(info)
        .build()
}

async fn fetch_loop<S: Store>(shared: Arc<Shared<S>>, jobs: mpsc::Sender<Task<Vec<u8>>>) {
    let queue = &shared.queue;
    let batch = queue.config().fetch_batch.max(1);
    let mut waiter = None;
    let mut failures = 0u32;
    let mut answered: Option<String> = None;
    loop {
        let first = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return,
            slot = shared.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let mut slots = vec![first];
        while slots.len() < batch {
            match shared.slots.clone().try_acquire_owned() {
                Ok(slot) => slots.push(slot),
                Err(_) => break,
            }
        }
        let asked = slots.len();
        // Retried with the same fetch id and the same slots until it answers: a lost
        // answer leased jobs to this worker, and the retry hands them out instead of
        // leaving them to lapse.
        let fetch_id = ulid::Ulid::generate().to_string();
        let fetched = loop {
            match queue.fetch_once(&shared.owner, asked, &fetch_id, answered.as_deref()).await {
                Ok(fetched) => {
                    failures = 0;
                    answered = Some(fetch_id);
                    break fetched;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(error = %error_chain(&error), failures, "fetching jobs failed; trying again");
                    pause(&shared.stop, error_pause(failures)).await;
                    if shared.stop.is_cancelled() {
                        return;
                    }
                }
            }
        };
        let got = fetched.jobs.len();
        for job in fetched.jobs {
            let slot = slots.pop();
            shared.held().insert(job.id.clone(), Held { attempt: job.attempt, slot });
            if jobs.send(into_task(job)).await.is_err() {
                return;
            }
        }
        drop(slots);
        if got < asked && fetched.ready_left == 0 {
            let wait = fetched.wake_in.unwrap_or(queue.config().max_idle_wait).min(queue.config().max_idle_wait);
            if wait.is_zero() {
                continue;
            }
            if waiter.is_none() {
                match queue.waiter().await {
                    Ok(ready) => waiter = Some(ready),
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(error = %error_chain(&error), "opening the wait connection failed");
                        pause(&shared.stop, error_pause(failures)).await;
                        continue;
                    }
                }
            }
            let Some(waiting) = waiter.as_mut() else { continue };
            tokio::select! {
                () = shared.stop.cancelled() => return,
                waited = queue.wait_for_work(waiting, wait) => if let Err(error) = waited {
                    failures += 1;
                    tracing::warn!(error = %error_chain(&error), "waiting for work failed");
                    pause(&shared.stop, error_pause(failures)).await;
                },
            }
        }
    }
}

async fn settle_loop<S: Store>(shared: Arc<Shared<S>>, mut messages: mpsc::UnboundedReceiver<SettleMessage>) {
    let limit = shared.queue.config().settle_batch.max(1);
    while let Some(first) = messages.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                SettleMessage::Outcome(settlement) => {
                    if let Some(held) = shared.held().get_mut(&settlement.id) {
                        held.slot = None;
                    }
                    batch.push(settlement);
                }
                SettleMessage::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < limit { messages.try_recv().ok() } else { None };
        }
        record(&shared, &batch).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes outcomes, retrying through Redis outages. After a lease's worth of failures
/// it gives up: the leases have lapsed by then and the jobs run again elsewhere.
async fn record<S: Store>(shared: &Shared<S>, batch: &[Settlement]) {
    if batch.is_empty() {
        return;
    }
    let give_up = tokio::time::Instant::now() + shared.queue.config().lease;
    let mut failures = 0u32;
    loop {
        match shared.queue.settle(&shared.owner, batch).await {
            Ok(recorded) => {
                let stale = recorded.iter().filter(|r| !**r).count();
                if stale > 0 {
                    tracing::warn!(stale, "outcomes of jobs whose lease had lapsed were ignored");
                }
                break;
            }
            Err(error) if tokio::time::Instant::now() < give_up => {
                failures += 1;
                tracing::warn!(error = %error_chain(&error), failures, "recording outcomes failed; trying again");
                tokio::time::sleep(error_pause(failures)).await;
            }
            Err(error) => {
                tracing::error!(error = %error_chain(&error), jobs = batch.len(), "giving up recording outcomes; the jobs will run again");
                break;
            }
        }
    }
    let mut held = shared.held();
    for settlement in batch {
        held.remove(&settlement.id);
    }
}

async fn renew_loop<S: Store>(shared: Arc<Shared<S>>) {
    let every = (shared.queue.config().lease / 3).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // A job whose handler finished holds no slot: its outcome is being written, which
        // ends the lease, so renewing it would only report it "lost".
        let held: Vec<(String, u32)> =
            shared.held().iter().filter(|(_, h)| h.slot.is_some()).map(|(id, h)| (id.clone(), h.attempt)).collect();
        for chunk in held.chunks(1_000) {
            match shared.queue.renew(&shared.owner, chunk).await {
                Ok(lost) if !lost.is_empty() => {
                    tracing::warn!(lost = lost.len(), "leases lapsed before renewal; those jobs run again elsewhere")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error_chain(&error), "renewing leases failed"),
            }
        }
    }
}
