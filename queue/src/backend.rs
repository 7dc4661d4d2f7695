//! The apalis 1.0 backend over any [`Store`]: `WorkerBuilder::new(..).backend(queue.backend(n))`
//! runs handlers unchanged on the queue, and the `TaskSink` methods (`push`, `push_bulk`,
//! `push_task`) push through it, a whole flush in one round trip.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis_codec::json::JsonCodec;
use apalis_core::backend::finalize::Durable;
use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend};
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use futures::future::BoxFuture;
use futures::{FutureExt, Sink};
use tokio::sync::mpsc;

use crate::config::QueueConfig;
use crate::driver::{Driver, SettleMessage};
use crate::redis_queue::RedisQueue;
use crate::settle_layer::SettleLayer;
use crate::store::{NewJob, QueueError, Store};

/// A boxed future that is `Sync` because it is only ever polled through `&mut`
/// (apalis needs backends to be `Sync`; the Redis client's futures are not).
struct SyncFuture<T>(std::sync::Mutex<BoxFuture<'static, T>>);

impl<T> SyncFuture<T> {
    fn new(future: impl std::future::Future<Output = T> + Send + 'static) -> SyncFuture<T> {
        SyncFuture(std::sync::Mutex::new(future.boxed()))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        self.0.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).poll_unpin(cx)
    }
}

/// One worker's view of a queue. Cloning gives a fresh, unstarted backend on the same
/// queue (apalis clones it for each worker it starts).
pub struct QueueBackend<S: Store, Args> {
    queue: S,
    concurrency: usize,
    codec: JsonCodec<Vec<u8>>,
    settle_tx: mpsc::UnboundedSender<SettleMessage>,
    settle_rx: Option<mpsc::UnboundedReceiver<SettleMessage>>,
    jobs: Option<mpsc::Receiver<Task<Vec<u8>>>>,
    driver: Option<Driver<S>>,
    closing: Option<SyncFuture<()>>,
    unpushed: Vec<Task<Vec<u8>>>,
    pushing: Option<SyncFuture<Result<(), QueueError>>>,
    _args: PhantomData<fn() -> Args>,
}

/// The backend on Redis.
pub type RedisBackend<Args> = QueueBackend<RedisQueue, Args>;
/// The backend on SQLite.
pub type SqliteBackend<Args> = QueueBackend<crate::sqlite_queue::SqliteQueue, Args>;

impl<S: Store, Args> std::fmt::Debug for QueueBackend<S, Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueBackend")
            .field("queue", &self.queue.config().name)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl RedisQueue {
    /// A backend for a worker that runs up to `concurrency` handlers at once (give the
    /// worker the same `.concurrency(n)`).
    pub fn backend<Args>(&self, concurrency: usize) -> RedisBackend<Args> {
        QueueBackend::new(self.clone(), concurrency)
    }
}

impl<S: Store, Args> QueueBackend<S, Args> {
    pub fn new(queue: S, concurrency: usize) -> QueueBackend<S, Args> {
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        QueueBackend {
            queue,
            concurrency: concurrency.max(1),
            codec: JsonCodec::default(),
            settle_tx,
            settle_rx: Some(settle_rx),
            jobs: None,
            driver: None,
            closing: None,
            unpushed: Vec::new(),
            pushing: None,
            _args: PhantomData,
        }
    }
}

impl<S: Store, Args> Clone for QueueBackend<S, Args> {
    fn clone(&self) -> Self {
        QueueBackend::new(self.queue.clone(), self.concurrency)
    }
}

impl<S: Store, Args> Backend for QueueBackend<S, Args> {
    type Task = Task<Vec<u8>>;
    type Error = QueueError;

    fn poll_ready(&mut self, _cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Result<(), QueueError>> {
        if self.driver.is_none()
            && self.closing.is_none()
            && let Some(settle_rx) = self.settle_rx.take()
        {
            let capacity = self.concurrency + self.queue.config().prefetch;
            let (jobs_tx, jobs_rx) = mpsc::channel(capacity.max(1));
            self.jobs = Some(jobs_rx);
            self.driver = Some(Driver::start(
                self.queue.clone(),
                worker.name(),
                self.concurrency,
                jobs_tx,
                self.settle_tx.clone(),
                settle_rx,
            ));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Vec<u8>>, QueueError>>> {
        match self.jobs.as_mut() {
            Some(jobs) => jobs.poll_recv(cx).map(|task| task.map(Ok)),
            None => Poll::Pending,
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), QueueError>> {
        if self.closing.is_none() {
            let driver = self.driver.take();
            let jobs = self.jobs.take();
            self.closing = Some(SyncFuture::new(async move {
                if let (Some(driver), Some(jobs)) = (driver, jobs) {
                    driver.close(jobs).await;
                }
            }));
        }
        match self.closing.as_mut() {
            Some(closing) => closing.poll(cx).map(Ok),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: Store, Args> BackendConfig for QueueBackend<S, Args> {
    type Args = Args;
    type Id = ulid::Ulid;
    type Kind = Durable;
    type Config = QueueConfig;
    type Layer = SettleLayer;

    fn config(&self) -> &QueueConfig {
        self.queue.config()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> SettleLayer {
        SettleLayer::new(self.settle_tx.clone(), self.queue.config().backoff)
    }
}

impl<S: Store, Args> WireFormatBackend for QueueBackend<S, Args> {
    type Codec = JsonCodec<Vec<u8>>;
    type Compact = Vec<u8>;

    fn codec(&self) -> &Self::Codec {
        &self.codec
    }
}

/// apalis keeps a task's `run_at` in whole seconds since the epoch.
fn delay_until(run_at_seconds: Option<u64>) -> Duration {
    let Some(run_at) = run_at_seconds else { return Duration::ZERO };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(run_at).saturating_sub(now)
}

fn new_job(task: Task<Vec<u8>>) -> NewJob {
    let (payload, ctx) = task.take();
    NewJob {
        id: ctx.task_id().map(ToString::to_string),
        payload,
        delay: delay_until(ctx.run_at()),
        max_attempts: ctx.max_attempts().map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
        idempotency_key: ctx.idempotency_key().map(str::to_owned),
    }
}

impl<S: Store, Args> Sink<Task<Vec<u8>>> for QueueBackend<S, Args> {
    type Error = QueueError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, task: Task<Vec<u8>>) -> Result<(), QueueError> {
        self.get_mut().unpushed.push(task);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        let this = self.get_mut();
        loop {
            if let Some(pushing) = this.pushing.as_mut() {
                let result = futures::ready!(pushing.poll(cx));
                this.pushing = None;
                result?;
            }
            if this.unpushed.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let jobs: Vec<NewJob> = this.unpushed.drain(..).map(new_job).collect();
            let queue = this.queue.clone();
            this.pushing = Some(SyncFuture::new(async move { queue.push(jobs).await.map(|_| ()) }));
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        self.poll_flush(cx)
    }
}
