//! Running one worker of any engine with a plain async handler: [`WorkerTask`] starts
//! it in a task of its own and tells when it dies, which apalis-redis workers do (an
//! error from the backend ends `Worker::run`).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::anyhow;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use futures::future::BoxFuture;
use petportrait_queue::RedisQueue;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Job, Setup, connection};

/// What a worker runs for each job.
pub type Handler = Arc<dyn Fn(Job) -> BoxFuture<'static, ()> + Send + Sync>;

/// Runs one worker named `name` until `stop` is cancelled (then it finishes the jobs it
/// holds) or the worker dies, which is an error.
pub async fn run_worker(setup: &Setup, name: &str, handler: Handler, stop: CancellationToken) -> anyhow::Result<()> {
    let concurrency = setup.concurrency;
    let handle = move |job: Job| -> BoxFuture<'static, Result<(), BoxDynError>> {
        let running = handler(job);
        Box::pin(async move {
            running.await;
            Ok(())
        })
    };
    let signal = async move {
        stop.cancelled().await;
        Ok::<(), std::io::Error>(())
    };
    // The worker runs in a task of its own, spawned from a plain function: awaiting it
    // inline makes the compiler fail to prove this future `Send` (with parallelize).
    let running = match setup.engine {
        Engine::Ours | Engine::OursPrefetch => {
            let queue = RedisQueue::connect(&setup.url, setup.queue_config()).await?;
            spawn_ours(&queue, name, concurrency, handle, signal)
        }
        Engine::Apalis | Engine::ApalisTuned => {
            let storage = RedisStorage::<Job>::new(connection(&setup.url).await?).with_config(setup.apalis_config());
            spawn_apalis(storage, setup.poll(), name, concurrency, handle, signal)
        }
    };
    match running.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(anyhow!("the {} worker died: {error}", setup.engine.name())),
        Err(error) => Err(anyhow!("the {} worker task failed: {error}", setup.engine.name())),
    }
}

type Running = tokio::task::JoinHandle<Result<(), WorkerError>>;

fn spawn_ours<H, F>(queue: &RedisQueue, name: &str, concurrency: usize, handle: H, signal: F) -> Running
where
    H: Fn(Job) -> BoxFuture<'static, Result<(), BoxDynError>> + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), std::io::Error>> + Send + 'static,
{
    tokio::spawn(
        WorkerBuilder::new(name)
            .backend(queue.backend::<Job>(concurrency))
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .build(handle)
            .run_until(signal),
    )
}

fn spawn_apalis<H, F>(
    storage: RedisStorage<Job>,
    poll: Duration,
    name: &str,
    concurrency: usize,
    handle: H,
    signal: F,
) -> Running
where
    H: Fn(Job) -> BoxFuture<'static, Result<(), BoxDynError>> + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), std::io::Error>> + Send + 'static,
{
    tokio::spawn(
        WorkerBuilder::new(name)
            .backend(storage.poll_with_strategy(Every::new(poll)))
            .concurrency(concurrency)
            .parallelize(tokio::spawn)
            .build(handle)
            .run_until(signal),
    )
}

/// A worker running in a task of its own (see [`WorkerTask::start`]).
pub struct WorkerTask {
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
    ended: bool,
}

impl WorkerTask {
    pub fn start(setup: &Setup, handler: Handler) -> WorkerTask {
        let setup = setup.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let name = format!("bench-{}-{}", setup.queue, std::process::id());
        let handle = tokio::spawn(async move { run_worker(&setup, &name, handler, token).await });
        WorkerTask { handle, stop, ended: false }
    }

    /// Resolves when the worker ends on its own (it only should when it dies), with why.
    pub async fn ended(&mut self) -> String {
        if self.ended {
            return futures::future::pending().await;
        }
        let ended = (&mut self.handle).await;
        self.ended = true;
        match ended {
            Ok(Ok(())) => "the worker stopped".to_owned(),
            Ok(Err(error)) => format!("{error:#}"),
            Err(error) => format!("the worker task failed: {error}"),
        }
    }

    /// Stops the worker, letting it finish what it holds for up to `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.stop.cancel();
        if !self.ended && tokio::time::timeout(grace, &mut self.handle).await.is_err() {
            tracing::warn!("the worker did not stop within {grace:?}");
            self.handle.abort();
        }
    }
}

/// A poll strategy that fires every period and never misses a tick: apalis's own
/// interval strategy re-arms a timer it never polls and can stall for a heartbeat.
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
        // Polling until Pending arms the waker for the next tick.
        while self.0.poll_tick(cx).is_ready() {
            fired = true;
        }
        if fired { Poll::Ready(Some(())) } else { Poll::Pending }
    }
}
