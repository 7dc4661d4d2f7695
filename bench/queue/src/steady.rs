//! Steady: an open-loop producer at a fixed rate and a worker in a child process, which
//! records each job's latency from its *intended* send time to its completion, so a
//! producer that falls behind cannot hide delays (coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::args::Args;
use crate::child::{self, Child};
use crate::engine::{Client, Job, Setup, epoch_ns};
use crate::worker::{Handler, WorkerTask};
use crate::{Report, number, percentile, round};

/// The most jobs one push carries when the producer catches up (as the BullMQ runner).
const MAX_BATCH: u64 = 500;

/// What the worker process reports when it stops.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Collected {
    latencies_ns: Vec<u64>,
    done: u64,
}

pub async fn run(args: &Args, setup: &Setup) -> Report {
    let mut report = Report::new(setup, "steady");
    if let Err(error) = measure(args, setup, &mut report).await {
        report.set("error", format!("{error:#}"));
    }
    report
}

async fn measure(args: &Args, setup: &Setup, report: &mut Report) -> anyhow::Result<()> {
    let rate: f64 = args.number("rate")?;
    let seconds: f64 = args.number("seconds")?;
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    report.set("rate", number(rate));
    report.set("seconds", number(seconds));
    let mut client = Client::connect(setup).await?;
    client.clean().await?;
    let mut worker = Child::spawn(
        "steady-worker",
        args.forward(&["engine", "queue", "url", "concurrency", "batch-size", "poll-ms", "prefetch"]),
    )?;
    let result = steady(args, rate, seconds, &mut client, &mut worker, report).await;
    worker.stop();
    worker.wait(Duration::from_secs(10)).await;
    if let Err(error) = client.clean().await {
        tracing::warn!(%error, "cleaning the queue after the run failed");
    }
    result
}

async fn steady(
    args: &Args,
    rate: f64,
    seconds: f64,
    client: &mut Client,
    worker: &mut Child,
    report: &mut Report,
) -> anyhow::Result<()> {
    let warmup: f64 = args.number("warmup")?;
    let grace = Duration::from_secs_f64(args.number("grace-s")?);
    let warm = (rate * warmup).round() as u64;
    let total = warm + (rate * seconds).round() as u64;
    let sent = total - warm;
    worker.expect("ready", Duration::from_secs(30)).await?;

    let gap = Duration::from_secs_f64(1.0 / rate);
    let lead = Duration::from_millis(200);
    let (start, start_ns) = (Instant::now() + lead, epoch_ns() + lead.as_nanos() as u64);
    let intended = |i: u64| start + gap.mul_f64(i as f64);
    let intended_ns = |i: u64| start_ns + (i as f64 * 1e9 / rate) as u64;
    let mut i = 0u64;
    let mut max_lag = Duration::ZERO;
    while i < total {
        let now = Instant::now();
        if now < intended(i) {
            tokio::time::sleep_until(intended(i)).await;
            continue;
        }
        // Everything due by now goes in one push: job i is due at start + i/rate.
        let due = ((now - start).as_secs_f64() * rate).floor() as u64 + 1;
        let end = due.min(total).min(i + MAX_BATCH).max(i + 1);
        max_lag = max_lag.max(now - intended(i));
        client.push((i..end).map(|j| Job::new(j, intended_ns(j), j >= warm)).collect()).await?;
        i = end;
        worker.poll_lines()?;
    }
    let produced = Instant::now();
    let backlog = client.waiting().await?;
    tracing::info!(total, warm, ?max_lag, backlog, "steady: produced");

    while worker.progress < sent && produced.elapsed() < grace {
        worker.poll_lines()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop();
    let collected: Collected = serde_json::from_str(&worker.expect("result", Duration::from_secs(60)).await?)
        .context("the worker's result")?;
    let mut latencies: Vec<f64> = collected.latencies_ns.iter().map(|ns| *ns as f64 / 1e6).collect();
    latencies.sort_by(f64::total_cmp);
    let ms = |p: f64| percentile(&latencies, p).map(|v| round(v, 3));
    report.set("p50_ms", ms(50.0));
    report.set("p95_ms", ms(95.0));
    report.set("p99_ms", ms(99.0));
    report.set("max_ms", latencies.last().map(|v| round(*v, 3)));
    report.set("sent", sent);
    report.set("done", collected.done);
    // A backlog of more than a second's worth at the end means the worker fell behind.
    report.set("saturated", backlog as f64 > rate || collected.done < sent);
    Ok(())
}

/// The worker process: runs until told to stop, then reports what it measured.
pub async fn worker(setup: &Setup) -> anyhow::Result<()> {
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let done = Arc::new(AtomicU64::new(0));
    let handler: Handler = {
        let (latencies, done) = (latencies.clone(), done.clone());
        Arc::new(move |job: Job| {
            if job.m {
                let latency = epoch_ns().saturating_sub(job.t);
                latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(latency);
                done.fetch_add(1, Ordering::Relaxed);
            }
            async {}.boxed()
        })
    };
    let stop = child::stop_signal();
    let mut running = WorkerTask::start(setup, handler);
    // Give the worker time to register before the producer starts its clock; jobs sent
    // earlier would still be taken, only late.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child::say("ready");
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            ended = running.ended() => {
                child::say(&format!("error {ended}"));
                return Ok(());
            }
            _ = ticks.tick() => child::say(&format!("progress {}", done.load(Ordering::Relaxed))),
        }
    }
    running.stop(Duration::from_secs(10)).await;
    let latencies_ns = std::mem::take(&mut *latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let collected = Collected { latencies_ns, done: done.load(Ordering::Relaxed) };
    child::say(&format!("result {}", serde_json::to_string(&collected)?));
    Ok(())
}
