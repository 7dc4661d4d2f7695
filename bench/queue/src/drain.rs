//! Drain: push N no-op jobs (1,000 per call), then time one worker from its start until
//! every job ran and its outcome is recorded.
//!
//! apalis-redis with a backlog of 8,000 or more due jobs fails its first fetch (see
//! engine.rs), so for `apalis-redis-tuned` the worker starts first and the producer
//! pushes while it runs, holding back whenever the scheduled set nears that limit. Its
//! `seconds` then run from the worker's (and the producer's) start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{FutureExt, StreamExt, TryStreamExt};
use petportrait_queue::{NewJob, Store};
use tokio::sync::Notify;

use crate::args::Args;
use crate::engine::{Client, Engine, Job, Setup};
use crate::worker::{Handler, WorkerTask};
use crate::{Report, round};

const CHUNK: u64 = 1_000;
/// The tuned apalis producer waits while its scheduled set holds this many ids (a push
/// adds at most a chunk, and the fetch fails from 8,000).
const SCHEDULED_LIMIT: u64 = 5_000;

pub async fn run(args: &Args, setup: &Setup) -> Report {
    let mut report = Report::new(setup, "drain");
    if let Err(error) = measure(args, setup, &mut report).await {
        report.set("error", format!("{error:#}"));
    }
    report
}

async fn measure(args: &Args, setup: &Setup, report: &mut Report) -> anyhow::Result<()> {
    let jobs: u64 = args.number("jobs")?;
    let timeout = Duration::from_secs(args.number("timeout-s")?);
    let parallel: usize = args.number::<usize>("push-parallel")?.max(1);
    report.set("jobs", jobs);
    report.set("concurrency", setup.concurrency);
    let mut client = Client::connect(setup).await?;
    client.clean().await?;
    let result = drain(setup, &mut client, jobs, timeout, parallel, report).await;
    // bench/run samples Redis's memory from outside; keep the drained state (what the
    // engine retains) long enough for it to see before the keys go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Err(error) = client.clean().await {
        tracing::warn!(%error, "cleaning the queue after the run failed");
    }
    result
}

async fn drain(
    setup: &Setup,
    client: &mut Client,
    jobs: u64,
    timeout: Duration,
    parallel: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let done = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let handler: Handler = {
        let (done, all_done) = (done.clone(), all_done.clone());
        Arc::new(move |_job| {
            if done.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                all_done.notify_one();
            }
            async {}.boxed()
        })
    };
    let push_while_running = setup.engine == Engine::ApalisTuned;
    report.set("pushed_while_running", push_while_running);

    let (started, mut worker) = if push_while_running {
        let started = Instant::now();
        let mut worker = WorkerTask::start(setup, handler);
        let pushing = enqueue(client, jobs, parallel, true);
        let took = tokio::select! {
            took = pushing => took?,
            ended = worker.ended() => bail!("the worker ended while jobs were pushed: {ended}"),
            () = tokio::time::sleep_until(deadline) => bail!("pushing timed out after {timeout:?}"),
        };
        record_enqueue(report, jobs, took);
        (started, worker)
    } else {
        let took = enqueue(client, jobs, parallel, false).await?;
        record_enqueue(report, jobs, took);
        (Instant::now(), WorkerTask::start(setup, handler))
    };

    let outcome = async {
        tokio::select! {
            () = all_done.notified() => {}
            ended = worker.ended() => bail!("{ended} after {} of {jobs} jobs", done.load(Ordering::Relaxed)),
            () = tokio::time::sleep_until(deadline) => {
                bail!("timed out after {timeout:?} with {} of {jobs} jobs done", done.load(Ordering::Relaxed))
            }
        }
        // Every handler ran; the run ends when the queue has recorded every outcome too
        // (BullMQ's runner counts its `completed` events, which come after the ack).
        while client.unsettled().await? > 0 {
            if tokio::time::Instant::now() > deadline {
                bail!("outcomes still unrecorded after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(started.elapsed())
    }
    .await;
    worker.stop(Duration::from_secs(10)).await;
    let seconds = outcome?.as_secs_f64();
    let ran = done.load(Ordering::Relaxed);
    if ran != jobs {
        tracing::warn!(ran, jobs, "handlers ran a different number of times than jobs were pushed");
    }
    report.set("seconds", round(seconds, 4));
    report.set("jobs_per_s", round(jobs as f64 / seconds, 1));
    report.set("errors", client.dead().await?);
    Ok(())
}

fn record_enqueue(report: &mut Report, jobs: u64, took: Duration) {
    report.set("enqueue_seconds", round(took.as_secs_f64(), 4));
    report.set("enqueue_per_s", round(jobs as f64 / took.as_secs_f64(), 1));
}

fn chunk(range: std::ops::Range<u64>) -> Vec<Job> {
    range.map(|i| Job::new(i, 0, true)).collect()
}

/// Pushes `jobs` jobs in chunks of 1,000, `parallel` calls at a time (ours only; the
/// others push one call at a time, like the BullMQ runner). Returns how long it took.
async fn enqueue(client: &mut Client, jobs: u64, parallel: usize, hold_back: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let ranges = (0..jobs.div_ceil(CHUNK)).map(|c| c * CHUNK..((c + 1) * CHUNK).min(jobs));
    if let (Client::Ours { queue, .. }, true) = (&*client, parallel > 1) {
        futures::stream::iter(ranges)
            .map(|range| {
                let queue = queue.clone();
                async move {
                    let jobs: Vec<NewJob> = chunk(range)
                        .iter()
                        .map(|job| serde_json::to_vec(job).map(NewJob::new))
                        .collect::<Result<_, _>>()?;
                    queue.push(jobs).await.context("push")?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(parallel)
            .try_collect::<()>()
            .await?;
        return Ok(started.elapsed());
    }
    for range in ranges {
        while hold_back && client.scheduled().await? >= SCHEDULED_LIMIT {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        client.push(chunk(range)).await?;
    }
    Ok(started.elapsed())
}
