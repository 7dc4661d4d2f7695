//! `webhook-throughput [--mode embedded|distributed|both] [--deliveries N]`: how fast
//! webhook deliveries reach a local receiver, and whether an endpoint that takes 15 s to
//! answer slows the deliveries to another.
//!
//! The app runs in this process (every role but the scheduler, as the system tests
//! start it) with a studio that never finishes, so generations stay unfinished until
//! canceled. An endpoint subscribed to `generation.canceled` answers at once; N
//! generations are made, then canceled eight at a time, and each cancel makes one
//! delivery to it and one to a second endpoint. Printed, for the first endpoint:
//! deliveries per second (N over the time from the first cancel to its last delivery),
//! and each delivery's latency (cancel sent → received). In the first run the second
//! endpoint answers at once too; in the second it answers every delivery after 15 s
//! (`WEBHOOK_TIMEOUT=20s`, so those are successes), the same work otherwise.
//!
//! ```text
//! cargo run --release -p petportrait-latency-bench --bin webhook-throughput -- --mode both
//! ```

mod modes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use clap::Parser;
use futures::StreamExt;
use modes::Which;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::studios::StallingStudio;
use petportrait_tests::{Mode, TestApp, wait_until};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "webhook-throughput", about = "Webhook deliveries per second, and a slow endpoint's effect")]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    mode: Which,
    #[arg(long, default_value_t = 1_000)]
    deliveries: usize,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let modes = args.mode.modes();
    for &mode in modes {
        for slow in [false, true] {
            measure(mode, slow, args.deliveries).await?;
        }
    }
    // The apps still hold the slow endpoint's attempts and the stalled renders; the
    // figures are printed, so the process ends here rather than drain them.
    std::process::exit(0)
}

async fn measure(mode: Mode, slow: bool, n: usize) -> anyhow::Result<()> {
    let arrivals: Arrivals = Arc::default();
    let receiver = receiver(arrivals.clone()).await?;
    let vars = [
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_TIMEOUT", "20s"),
        ("STARTER_CREDITS", "1000000"),
        ("WORKER_CONCURRENCY", "1"),
        ("RUST_LOG", "error"),
        ("RATE_LIMIT_GENERATIONS", "off"),
    ];
    let roles = petportrait::Roles { web: true, worker: true, scheduler: false };
    let (studio, _release) = StallingStudio::new();
    let app = TestApp::spawn_with(mode, &vars, roles, Some(studio)).await;
    let ann = app.user("Integrator").await;
    // Two endpoints each time, so both runs make the same work: beside the measured
    // one, another that answers at once, or one that takes 15 s.
    let other = if slow { "slow" } else { "other" };
    let endpoints = [format!("{receiver}/fast"), format!("{receiver}/{other}")];
    for url in &endpoints {
        let (status, body) =
            ann.post_json("/v1/webhook-endpoints", &json!({"url": url, "events": ["generation.canceled"]})).await;
        anyhow::ensure!(status == reqwest::StatusCode::CREATED, "register: {body}");
    }
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let created = ann.create_portrait(&upload, "pencil_sketch").await;
        ids.push(created["id"].as_str().context("no id")?.to_owned());
    }
    let first_sent = Instant::now();
    let sent: Vec<(String, Instant)> = futures::stream::iter(ids)
        .map(|id| {
            let ann = &ann;
            async move {
                let at = Instant::now();
                let (status, _) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
                assert_eq!(status, reqwest::StatusCode::ACCEPTED);
                (id, at)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let cancel_seconds = first_sent.elapsed().as_secs_f64();
    wait_until("every delivery to the fast endpoint", Duration::from_secs(600), || {
        let done = arrivals.lock().expect("lock").len() >= n;
        async move { done.then_some(()) }
    })
    .await;
    let arrivals = arrivals.lock().expect("lock").clone();
    let last = arrivals.values().max().copied().context("no arrival")?;
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| arrivals.get(id).map(|got| got.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let name = if mode == Mode::Embedded { "embedded" } else { "distributed" };
    let shape = if slow { "beside an endpoint answering in 15 s" } else { "beside another fast endpoint" };
    println!(
        "{name}, {shape}: {n} deliveries in {:.2} s from the first cancel ({:.0}/s; the cancels alone took {cancel_seconds:.2} s); \
         cancel → delivered ms: p50 {:.0}, p99 {:.0}, max {:.0}",
        (last - first_sent).as_secs_f64(),
        n as f64 / (last - first_sent).as_secs_f64(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
    Ok(())
}

/// `/fast` answers at once and records which generation's event arrived when; `/other`
/// answers at once; `/slow` answers after 15 s.
async fn receiver(arrivals: Arrivals) -> anyhow::Result<String> {
    let app = Router::new()
        .route(
            "/fast",
            post(move |body: Bytes| {
                let arrivals = arrivals.clone();
                async move {
                    let at = Instant::now();
                    if let Ok(payload) = serde_json::from_slice::<Value>(&body)
                        && let Some(id) = payload["data"]["id"].as_str()
                    {
                        arrivals.lock().expect("lock").entry(id.to_owned()).or_insert(at);
                    }
                    "ok"
                }
            }),
        )
        .route("/other", post(|| async { "ok" }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(15)).await;
                "ok, eventually"
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}
