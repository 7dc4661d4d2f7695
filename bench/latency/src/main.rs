//! `pickup-latency [--mode embedded|distributed|both] [--samples N]`: how soon an idle
//! worker starts a new generation. The goal is about one poll interval (50 ms in tests
//! and by default), 100 ms at most.
//!
//! It starts the real app on a random port with every role, as the system tests do,
//! creates one pencil-sketch portrait at a time (so the worker is idle each time),
//! waits for it to finish, and takes the pickup from the server's own timestamps:
//! `started_at - created_at`. For each mode it prints the pickups in milliseconds,
//! sorted, and their median. It asserts nothing: it exits non-zero only when something
//! fails to run.
//!
//! Distributed mode needs PostgreSQL and Redis, found as the system tests find them:
//! `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). Each run gets a database, a
//! queue prefix and a data folder of its own, removed afterwards.
//!
//! ```text
//! cargo run -p petportrait-latency-bench --bin pickup-latency -- --mode both
//! ```

mod modes;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use modes::Which;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};

#[derive(Parser)]
#[command(name = "pickup-latency", about = "How soon an idle worker picks up a new generation")]
struct Args {
    /// Which deployment shape to measure.
    #[arg(long, value_enum, default_value = "both")]
    mode: Which,
    /// Generations created, one at a time, per mode.
    #[arg(long, default_value_t = 7)]
    samples: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let modes = args.mode.modes();
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    for &mode in modes {
        let mut pickups = measure(mode, args.samples).await?;
        pickups.sort_unstable();
        let median = pickups[pickups.len() / 2];
        let name = match mode {
            Mode::Embedded => "embedded",
            Mode::Distributed => "distributed",
            Mode::Cluster => "cluster",
        };
        println!("{name}: pickup latency median {median} ms; sorted (ms): {pickups:?}");
    }
    Ok(())
}

/// The pickup of `samples` generations, in milliseconds, in the order they were made.
async fn measure(mode: Mode, samples: usize) -> anyhow::Result<Vec<i64>> {
    // Enough credits for every sample: a pencil sketch costs a few.
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "1000"), ("RATE_LIMIT_GENERATIONS", "off")]).await;
    let ann = app.user("Ann").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut pickups = Vec::with_capacity(samples);
    for _ in 0..samples {
        let created = ann.create_portrait(&upload, "pencil_sketch").await;
        let id = created["id"].as_str().context("the created generation has no id")?;
        let done = ann.wait_terminal(id, Duration::from_secs(60)).await;
        if done["status"] != "succeeded" {
            bail!("generation {id} did not succeed, so its timestamps say nothing of pickup: {done}");
        }
        pickups.push(millis(&done, "started_at")? - millis(&done, "created_at")?);
    }
    app.stop().await;
    Ok(pickups)
}

/// Milliseconds since the epoch of a generation's RFC 3339 timestamp field.
fn millis(generation: &serde_json::Value, field: &str) -> anyhow::Result<i64> {
    let text = generation[field].as_str().with_context(|| format!("{field} missing in {generation}"))?;
    let at = chrono::DateTime::parse_from_rfc3339(text).with_context(|| format!("{field} is not RFC 3339: {text}"))?;
    Ok(at.timestamp_millis())
}
