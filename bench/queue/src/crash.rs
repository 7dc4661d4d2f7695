//! Crash: a worker process is killed with SIGKILL while it holds jobs; a new one must
//! finish them all, none lost, and none run twice except those the kill interrupted.
//! Every job start and finish is counted in two Redis hashes keyed by the job's own
//! sequence number, written by the handler on a connection of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::args::Args;
use crate::child::{self, Child};
use crate::engine::{self, Client, Job, Setup};
use crate::worker::{Handler, WorkerTask};
use crate::{Report, round};

const CHILD_FLAGS: [&str; 9] =
    ["engine", "queue", "url", "concurrency", "job-ms", "lease-ms", "batch-size", "poll-ms", "prefetch"];

fn keys(queue: &str) -> (String, String) {
    (format!("bench:{queue}:starts"), format!("bench:{queue}:finishes"))
}

pub async fn run(args: &Args, setup: &Setup) -> Report {
    let mut report = Report::new(setup, "crash");
    if let Err(error) = measure(args, setup, &mut report).await {
        report.set("error", format!("{error:#}"));
    }
    report
}

async fn hash(conn: &mut ConnectionManager, key: &str) -> anyhow::Result<HashMap<String, u64>> {
    Ok(redis::cmd("HGETALL").arg(key).query_async(conn).await?)
}

async fn measure(args: &Args, setup: &Setup, report: &mut Report) -> anyhow::Result<()> {
    let jobs: u64 = args.number("jobs")?;
    report.set("jobs", jobs);
    let mut client = Client::connect(setup).await?;
    client.clean().await?;
    let mut conn = client.redis();
    let (starts_key, finishes_key) = keys(&setup.queue);
    let _: u64 = redis::cmd("DEL").arg(&starts_key).arg(&finishes_key).query_async(&mut conn).await?;
    let result = crash(args, setup, &mut client, report).await;
    if let Err(error) = client.clean().await {
        tracing::warn!(%error, "cleaning the queue after the run failed");
    }
    let _: Result<u64, _> = redis::cmd("DEL").arg(&starts_key).arg(&finishes_key).query_async(&mut conn).await;
    result
}

async fn crash(args: &Args, setup: &Setup, client: &mut Client, report: &mut Report) -> anyhow::Result<()> {
    let jobs: u64 = args.number("jobs")?;
    let kill_after = Duration::from_millis(args.number("kill-after-ms")?);
    let deadline = match args.number::<u64>("deadline-s")? {
        0 => setup.lease + Duration::from_secs(60),
        seconds => Duration::from_secs(seconds),
    };
    let mut conn = client.redis();
    let (starts_key, finishes_key) = keys(&setup.queue);
    for first in (0..jobs).step_by(1_000) {
        client.push((first..(first + 1_000).min(jobs)).map(|i| Job::new(i, 0, true)).collect()).await?;
    }

    let mut first = Child::spawn("crash-worker", args.forward(&CHILD_FLAGS))?;
    first.expect("ready", Duration::from_secs(30)).await?;
    tokio::time::sleep(kill_after).await;
    first.kill()?;
    let killed = Instant::now();
    let starts_at_kill = hash(&mut conn, &starts_key).await?;
    let finishes_at_kill = hash(&mut conn, &finishes_key).await?;
    let in_flight: Vec<&String> = starts_at_kill.keys().filter(|id| !finishes_at_kill.contains_key(*id)).collect();
    tracing::info!(
        started = starts_at_kill.len(),
        finished = finishes_at_kill.len(),
        in_flight = in_flight.len(),
        "crash: killed the first worker"
    );

    let mut second = Child::spawn("crash-worker", args.forward(&CHILD_FLAGS))?;
    let outcome = async {
        second.expect("ready", Duration::from_secs(30)).await?;
        let mut finished = finishes_at_kill.len() as u64;
        let mut last_finish = (finished > 0).then_some(killed);
        while killed.elapsed() < deadline && finished < jobs {
            let now: u64 = redis::cmd("HLEN").arg(&finishes_key).query_async(&mut conn).await?;
            if now > finished {
                finished = now;
                last_finish = Some(Instant::now());
            }
            second.poll_lines()?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the queue settle so that late second runs show up as duplicates.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(5) && client.unsettled().await? > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(last_finish)
    }
    .await;
    second.stop();
    second.wait(Duration::from_secs(30)).await;
    let last_finish = outcome?;

    let starts = hash(&mut conn, &starts_key).await?;
    let finishes = hash(&mut conn, &finishes_key).await?;
    let finishes_of = |i: u64| finishes.get(&i.to_string()).copied().unwrap_or(0);
    let lost = (0..jobs).filter(|i| finishes_of(*i) == 0).count();
    let duplicated = (0..jobs).filter(|i| finishes_of(*i) > 1).count();
    let started_again =
        |id: &String| starts.get(id).copied().unwrap_or(0) > starts_at_kill.get(id).copied().unwrap_or(0);
    let rerun_inflight = in_flight.iter().filter(|id| started_again(id)).count();
    let rerun_finished = finishes_at_kill.keys().filter(|id| started_again(id)).count();
    report.set("lost", lost);
    report.set("duplicated", duplicated);
    report.set("in_flight_at_kill", in_flight.len());
    report.set("rerun_inflight", rerun_inflight);
    report.set("rerun_finished", rerun_finished);
    report.set("seconds_to_finish", last_finish.map(|at| round((at - killed).as_secs_f64(), 3)));
    report.set("lease_ms", setup.lease.as_millis() as u64);
    Ok(())
}

/// The worker process: each job counts its start, sleeps, then counts its finish.
pub async fn worker(args: &Args, setup: &Setup) -> anyhow::Result<()> {
    let job_time = Duration::from_millis(args.number("job-ms")?);
    let conn = engine::connection(&setup.url).await?;
    let (starts_key, finishes_key) = keys(&setup.queue);
    let (starts_key, finishes_key): (Arc<str>, Arc<str>) = (starts_key.into(), finishes_key.into());
    let handler: Handler = Arc::new(move |job: Job| {
        let (mut conn, starts_key, finishes_key) = (conn.clone(), starts_key.clone(), finishes_key.clone());
        async move {
            let started: Result<i64, _> =
                redis::cmd("HINCRBY").arg(&*starts_key).arg(job.i).arg(1).query_async(&mut conn).await;
            tokio::time::sleep(job_time).await;
            let finished: Result<i64, _> =
                redis::cmd("HINCRBY").arg(&*finishes_key).arg(job.i).arg(1).query_async(&mut conn).await;
            if let Err(error) = started.and(finished) {
                tracing::warn!(%error, job = job.i, "counting a job failed");
            }
        }
        .boxed()
    });
    let stop = child::stop_signal();
    let mut running = WorkerTask::start(setup, handler);
    child::say("ready");
    tokio::select! {
        () = stop.cancelled() => {}
        ended = running.ended() => {
            child::say(&format!("error {ended}"));
            return Ok(());
        }
    }
    running.stop(job_time + Duration::from_secs(10)).await;
    Ok(())
}
