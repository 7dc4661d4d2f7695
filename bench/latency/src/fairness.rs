//! `fairness [--mode embedded|distributed|both] [--backlog 200] [--others 5] [--cap 1]`:
//! user A enqueues a backlog, then user B enqueues a few; how many of A's generations
//! end before B's first, and how long B waits, with `USER_MAX_RUNNING` off and at
//! `--cap`, side by side in one run.
//!
//! It starts the real app with every role (`WORKER_CONCURRENCY=2`, the built-in studio,
//! 256 px pixel-art portraits: the cheapest real render), as the system tests do, once
//! per configuration, and reads each generation's `completed_at` from the database at
//! the end. It asserts nothing.
//!
//! ```text
//! cargo run --release -p petportrait-latency-bench --bin fairness -- --mode both
//! ```

mod modes;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use modes::Which;
use petportrait_core::ids::GenerationId;
use petportrait_tests::client::Client;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "fairness", about = "Whether one user's backlog holds up another user's generations")]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    mode: Which,
    /// Generations user A enqueues first.
    #[arg(long, default_value_t = 200)]
    backlog: usize,
    /// Generations user B enqueues after them.
    #[arg(long, default_value_t = 5)]
    others: usize,
    /// `USER_MAX_RUNNING` of the capped run.
    #[arg(long, default_value_t = 1)]
    cap: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "| mode | USER_MAX_RUNNING | A's done before B's first result | of them after B enqueued | B's first result after (s) | B's last result after (s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for &mode in args.mode.modes() {
        for cap in [0, args.cap] {
            let run = measure(mode, cap, &args).await?;
            let name = match mode {
                Mode::Embedded => "embedded",
                Mode::Distributed => "distributed",
                Mode::Cluster => "cluster",
            };
            let cap = if cap == 0 { "off".to_owned() } else { cap.to_string() };
            println!(
                "| {name} | {cap} | {} of {} | {} | {:.1} | {:.1} |",
                run.a_before_b, args.backlog, run.a_while_b_waited, run.b_first, run.b_last
            );
        }
    }
    Ok(())
}

struct Run {
    a_before_b: usize,
    /// Of those, the ones that ended after B's first generation was created.
    a_while_b_waited: usize,
    b_first: f64,
    b_last: f64,
}

async fn enqueue(client: &Client, upload: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let order = json!({"kind": "portrait", "upload_id": upload, "style": "pixel_art", "options": {"max_side": 256}});
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, body) = client.post_json("/v1/generations", &order).await;
        anyhow::ensure!(status.as_u16() == 202, "create: {status} {body}");
        ids.push(body["id"].as_str().context("an id")?.to_owned());
    }
    Ok(ids)
}

async fn measure(mode: Mode, cap: u32, args: &Args) -> anyhow::Result<Run> {
    let cap_text = cap.to_string();
    let vars = [
        ("USER_MAX_RUNNING", cap_text.as_str()),
        ("WORKER_CONCURRENCY", "2"),
        ("STARTER_CREDITS", "100000"),
        ("RATE_LIMIT_GENERATIONS", "off"),
        ("RUST_LOG", "error"),
    ];
    let app = TestApp::spawn(mode, &vars).await;
    let ann = app.user("Ann").await;
    let bob = app.user("Bob").await;
    let anns_upload = ann.upload_ok(pet_jpeg()).await;
    let bobs_upload = bob.upload_ok(pet_jpeg()).await;
    let anns = enqueue(&ann, &anns_upload, args.backlog).await?;
    let bobs = enqueue(&bob, &bobs_upload, args.others).await?;
    let db = &app.services.db;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let mut done = 0;
        for id in &bobs {
            let (_, body): (_, Value) = bob.get(&format!("/v1/generations/{id}")).await;
            if matches!(body["status"].as_str(), Some("succeeded" | "failed" | "canceled")) {
                done += 1;
            }
        }
        if done == bobs.len() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "B's generations did not finish within 30 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let completed = |ids: &[String]| {
        let ids = ids.to_vec();
        async move {
            let mut times = Vec::new();
            for id in ids {
                let id = GenerationId::parse(&id).context("an id")?;
                if let Some(at) = db.get_generation(&id).await?.and_then(|row| row.completed_at) {
                    times.push(at);
                }
            }
            anyhow::Ok(times)
        }
    };
    let b_times = completed(&bobs).await?;
    let a_times = completed(&anns).await?;
    let b_first = *b_times.iter().min().context("B finished")?;
    let b_last = *b_times.iter().max().context("B finished")?;
    let created =
        db.get_generation(&GenerationId::parse(&bobs[0]).context("an id")?).await?.context("B's row")?.created_at;
    let run = Run {
        a_before_b: a_times.iter().filter(|at| **at < b_first).count(),
        a_while_b_waited: a_times.iter().filter(|at| **at < b_first && **at >= created).count(),
        b_first: (b_first - created) as f64 / 1000.0,
        b_last: (b_last - created) as f64 / 1000.0,
    };
    app.stop().await;
    Ok(run)
}
