//! `sse-streams [--mode embedded|distributed] [--streams N] [--generations G]`: N
//! concurrent event streams on one API process: the process's memory per open stream,
//! and the time from a change's commit to its event at every client.
//!
//! It runs the release binary (`target/release/petportrait`, built first) as a separate
//! `petportrait api` process, so its memory is the server's alone (`VmRSS` from /proc),
//! with no worker: G generations stay queued. N streams are opened over them (N/G per
//! generation) and each reads its first event; the RSS is read before and after. Then
//! each generation is canceled in turn: the cancel commits and publishes, and every
//! stream on it reads the `canceled` object. The latency of one client is from the
//! moment the cancel request was sent (an upper bound on the commit) to the moment
//! that client has the event. Prints RSS, bytes per stream, and p50/p90/p99/max.
//!
//! ```text
//! cargo build --release -p petportrait -p petportrait-latency-bench
//! target/release/sse-streams --mode embedded --streams 10000 --generations 100
//! ```
//! Needs a file-descriptor limit above N (both processes hold N sockets).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Client, Isolation, Mode, wait_until};
use serde_json::json;
use tokio::sync::Barrier;

#[derive(Parser)]
#[command(name = "sse-streams", about = "Memory and latency of many event streams on one API process")]
struct Args {
    #[arg(long, value_enum, default_value = "embedded")]
    mode: Which,
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, default_value_t = 100)]
    generations: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Embedded,
    Distributed,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.generations == 0 || args.streams < args.generations {
        bail!("--streams must be at least --generations, which must be at least 1");
    }
    let mode = match args.mode {
        Which::Embedded => Mode::Embedded,
        Which::Distributed => Mode::Distributed,
    };
    let binary = std::env::current_exe()?.with_file_name("petportrait");
    if !binary.exists() {
        bail!("{} is missing: cargo build --release -p petportrait", binary.display());
    }
    let isolation = Isolation::new(mode).await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let mut vars = isolation.vars.clone();
    vars.extend(
        [
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("DEV_LOGIN", "true".to_owned()),
            ("STARTER_CREDITS", "1000000".to_owned()),
            ("HTTP_MAX_CONNECTIONS", (args.streams + 1_000).to_string()),
            ("RUST_LOG", "error".to_owned()),
            // One user makes every generation: the per-user limits are not measured here.
            ("RATE_LIMIT_GENERATIONS", "off".to_owned()),
            ("RATE_LIMIT_UPLOADS", "off".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let status =
        tokio::process::Command::new(&binary).arg("migrate").envs(vars.clone()).stdout(Stdio::null()).status().await?;
    if !status.success() {
        bail!("petportrait migrate failed");
    }
    let mut server = tokio::process::Command::new(&binary).arg("api").envs(vars).kill_on_drop(true).spawn()?;
    let pid = server.id().context("no pid")?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;

    let ann = Client::sign_in(&base, "Watcher").await;
    let (_, token) = ann.post_json("/v1/me/tokens", &json!({"name": "bench"})).await;
    let token = token["token"].as_str().context("no token")?.to_owned();
    let upload = ann.upload_ok(pet_jpeg()).await;
    let mut ids = Vec::with_capacity(args.generations);
    for _ in 0..args.generations {
        let created = ann.create_portrait(&upload, "pencil_sketch").await;
        ids.push(created["id"].as_str().context("no id")?.to_owned());
    }
    let before = rss_kib(pid)?;

    // One connection per stream (reqwest pools per host: a streaming answer holds its
    // connection until dropped).
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let opened = Arc::new(Barrier::new(args.streams + 1));
    let mut streams = Vec::with_capacity(args.streams);
    let started = Instant::now();
    for n in 0..args.streams {
        let url = format!("{base}/v1/generations/{}/events", ids[n % ids.len()]);
        let request = http.get(url).bearer_auth(&token);
        let opened = opened.clone();
        streams.push(tokio::spawn(async move { watch(request, opened).await }));
    }
    opened.wait().await;
    let open_seconds = started.elapsed().as_secs_f64();
    let after = rss_kib(pid)?;

    let mut sent_at = Vec::with_capacity(ids.len());
    for id in &ids {
        sent_at.push(Instant::now());
        let (status, _) = ann.post_json(&format!("/v1/generations/{id}/cancel"), &json!({})).await;
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("cancel answered {status}");
        }
    }
    let mut latencies_ms = Vec::with_capacity(args.streams);
    for (n, stream) in streams.into_iter().enumerate() {
        let arrived = stream.await?.context("a stream ended without the canceled event")?;
        let sent = sent_at[n % ids.len()];
        latencies_ms.push(arrived.saturating_duration_since(sent).as_secs_f64() * 1000.0);
    }
    latencies_ms.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    let name = if mode == Mode::Embedded { "embedded (in-process feed)" } else { "distributed (Redis pub/sub)" };
    println!(
        "{name}: {} streams over {} generations opened in {open_seconds:.1} s; API RSS {} MiB → {} MiB: {:.1} KiB per stream",
        args.streams,
        args.generations,
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / args.streams as f64,
    );
    println!(
        "{name}: cancel sent → event at the client, ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
        quantile(0.5),
        quantile(0.9),
        quantile(0.99),
        quantile(1.0)
    );
    server.kill().await.ok();
    drop(isolation);
    Ok(())
}

/// Opens one stream, waits at the barrier once its first event arrived (or it failed,
/// so the others are not held up), then returns when the `canceled` object arrives.
async fn watch(request: reqwest::RequestBuilder, opened: Arc<Barrier>) -> Option<Instant> {
    let mut seen_first = false;
    let arrived = read_until_canceled(request, &opened, &mut seen_first).await;
    if !seen_first {
        opened.wait().await;
    }
    arrived
}

async fn read_until_canceled(
    request: reqwest::RequestBuilder,
    opened: &Barrier,
    seen_first: &mut bool,
) -> Option<Instant> {
    let response = request.send().await.ok()?;
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if !*seen_first && text.contains("\n\n") {
            *seen_first = true;
            text.clear();
            opened.wait().await;
            continue;
        }
        if *seen_first && text.contains("\"status\":\"canceled\"") {
            return Some(Instant::now());
        }
    }
    None
}

/// Polls `/readyz` until the API answers 200 (the tests' `wait_until`, 60 s deadline).
async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    let url = format!("{base}/readyz");
    wait_until("the API to be ready", Duration::from_secs(60), || async {
        http.get(&url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
}

/// The resident memory of process `pid` in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}
