//! `status-throughput [--mode embedded|distributed|both] [--rounds N] [--seconds S]`:
//! requests per second of `GET /v1/generations/{id}` (the 200 path and the 304 path with
//! `If-None-Match`) beside a bare axum handler answering the same JSON, measured with
//! wrk in the same run, alternating, so the machine's noise hits all three alike.
//!
//! The app runs in this process with every role (as the system tests start it); one
//! generation is made and finished first, then polled with a personal API token. The
//! bare handler serves the object the app returned, serialized on every request.
//! Needs `wrk` (Debian: `apt-get install wrk`). Prints one line per round and the
//! medians with the ratios the issue asks for (200 ≥ 0.5×, 304 ≥ 0.7× the bare handler).
//!
//! ```text
//! cargo run --release -p petportrait-latency-bench --bin status-throughput -- --mode both
//! ```

mod modes;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use clap::Parser;
use modes::Which;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "status-throughput", about = "GET /v1/generations/{id} against a bare axum handler")]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    mode: Which,
    /// Rounds of (bare, 200, 304), each target measured once per round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Open connections per wrk run.
    #[arg(long, default_value_t = 32)]
    connections: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    Command::new("wrk").arg("--version").output().context("wrk is not installed (apt-get install wrk)")?;
    let modes = args.mode.modes();
    for &mode in modes {
        measure(mode, &args).await?;
    }
    Ok(())
}

async fn measure(mode: Mode, args: &Args) -> anyhow::Result<()> {
    let name = if mode == Mode::Embedded { "embedded (SQLite)" } else { "distributed (PostgreSQL)" };
    let app = TestApp::spawn(mode, &[("RUST_LOG", "error"), ("RATE_LIMIT_GENERATIONS", "off")]).await;
    let ann = app.user("Poller").await;
    let upload = ann.upload_ok(pet_jpeg()).await;
    let created = ann.create_portrait(&upload, "pencil_sketch").await;
    let id = created["id"].as_str().context("no id")?.to_owned();
    ann.wait_terminal(&id, Duration::from_secs(60)).await;
    let (_, token) = ann.post_json("/v1/me/tokens", &json!({"name": "bench"})).await;
    let token = token["token"].as_str().context("no token")?.to_owned();
    let path = format!("/v1/generations/{id}");
    let response = reqwest::Client::new().get(ann.url(&path)).bearer_auth(&token).send().await?;
    let etag = response.headers().get("etag").context("no ETag")?.to_str()?.to_owned();
    let object: Value = response.json().await?;

    let bare = bare_server(object.clone()).await?;
    let auth = format!("Authorization: Bearer {token}");
    let if_none_match = format!("If-None-Match: {etag}");
    // The last two show where the time goes: the app's layers alone (`/healthz`), and
    // with a bearer token checked (`/v1/styles` answers a constant).
    let targets: [(&str, String, Vec<&str>); 5] = [
        ("bare axum", format!("{bare}/v1/generations/{id}"), vec![]),
        ("GET 200", ann.url(&path), vec![auth.as_str()]),
        ("GET 304", ann.url(&path), vec![auth.as_str(), if_none_match.as_str()]),
        ("app /healthz", ann.url("/healthz"), vec![]),
        ("app /v1/styles", ann.url("/v1/styles"), vec![auth.as_str()]),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 1..=args.rounds {
        for (i, (label, url, headers)) in targets.iter().enumerate() {
            let rps = wrk(url, headers, args).await?;
            println!("{name} round {round}: {label}: {rps:.0} req/s");
            results[i].push(rps);
        }
    }
    let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
    println!(
        "{name}: median req/s bare {:.0}, 200 {:.0} ({:.2}x), 304 {:.0} ({:.2}x); wrk -t2 -c{} -d{}s, {} rounds",
        medians[0],
        medians[1],
        medians[1] / medians[0],
        medians[2],
        medians[2] / medians[0],
        args.connections,
        args.seconds,
        args.rounds
    );
    Ok(())
}

/// A bare axum server answering `object` (serialized per request) at any generation path.
async fn bare_server(object: Value) -> anyhow::Result<String> {
    let app = Router::new().route(
        "/v1/generations/{id}",
        get(move || {
            let object = object.clone();
            async move { axum::Json(object) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// Runs wrk against `url` and returns its requests per second; fails when any
/// response was not 2xx/3xx or a socket error occurred.
async fn wrk(url: &str, headers: &[&str], args: &Args) -> anyhow::Result<f64> {
    let mut command = tokio::process::Command::new("wrk");
    command.args(["-t2", &format!("-c{}", args.connections), &format!("-d{}s", args.seconds)]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.arg(url).output().await.context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx or 3xx responses") || text.contains("Socket errors") {
        bail!("wrk saw errors against {url}:\n{text}");
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
