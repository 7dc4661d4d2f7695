//! Pickup: how long an idle worker takes to start a job pushed at a random moment.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::engine::{Client, Job, Setup, epoch_ns};
use crate::worker::{Handler, WorkerTask};
use crate::{Report, percentile, round};

pub async fn run(args: &Args, setup: &Setup) -> Report {
    let mut report = Report::new(setup, "pickup");
    if let Err(error) = measure(args, setup, &mut report).await {
        report.set("error", format!("{error:#}"));
    }
    report
}

async fn measure(args: &Args, setup: &Setup, report: &mut Report) -> anyhow::Result<()> {
    let samples: usize = args.number("samples")?;
    let setup = Setup { concurrency: 1, ..setup.clone() };
    let mut client = Client::connect(&setup).await?;
    client.clean().await?;
    let (tx, mut picked) = mpsc::unbounded_channel::<f64>();
    let handler: Handler = Arc::new(move |job: Job| {
        let _ = tx.send(epoch_ns().saturating_sub(job.t) as f64 / 1e6);
        async {}.boxed()
    });
    let mut worker = WorkerTask::start(&setup, handler);
    // Let the worker go idle (blocked or polling) before the first sample.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut taken = Vec::with_capacity(samples);
    let outcome = async {
        for sample in 0..samples {
            tokio::time::sleep(Duration::from_millis(rand::random_range(200..1_200))).await;
            client.push(vec![Job::new(sample as u64, epoch_ns(), true)]).await?;
            tokio::select! {
                ms = picked.recv() => match ms {
                    Some(ms) => taken.push(ms),
                    None => bail!("the handler went away"),
                },
                ended = worker.ended() => bail!("{ended}"),
                () = tokio::time::sleep(Duration::from_secs(35)) => bail!("sample {sample} not picked up within 35 s"),
            }
        }
        Ok(())
    }
    .await;
    worker.stop(Duration::from_secs(10)).await;
    if let Err(error) = client.clean().await {
        tracing::warn!(%error, "cleaning the queue after the run failed");
    }
    report.set("samples", taken.iter().map(|ms| Value::from(round(*ms, 3))).collect::<Vec<_>>());
    outcome?;
    let mut sorted = taken.clone();
    sorted.sort_by(f64::total_cmp);
    report.set("p50_ms", percentile(&sorted, 50.0).map(|v| round(v, 3)));
    report.set("p99_ms", percentile(&sorted, 99.0).map(|v| round(v, 3)));
    report.set("max_ms", sorted.last().map(|v| round(*v, 3)));
    Ok(())
}
