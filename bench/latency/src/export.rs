//! `export [--mode embedded|distributed|both] [--small 100] [--large 1000] [--gallery 50] [--max-side 256] [--style pixel_art]`:
//! how long an access export takes and how much memory it adds, for a user with
//! `--small` generations and then, the same user, with `--large` (each with its output,
//! and `--gallery` of them saved), side by side in one run: a streamed export's memory
//! does not grow with the data.
//!
//! It starts the real app with every role in this process (as the system tests do),
//! makes the generations through the API (PNG portraits of `--max-side` px in
//! `--style`; pixel art is the cheapest real render), then asks for an export through the API and waits for it. Memory is the
//! process's peak resident set (`VmHWM`, reset through `/proc/self/clear_refs` just
//! before the request) above its resident set at that moment; the process is otherwise
//! idle. It asserts nothing.
//!
//! ```text
//! cargo run --release -p petportrait-latency-bench --bin export -- --mode both
//! ```

mod modes;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use modes::Which;
use petportrait_tests::client::Client;
use petportrait_tests::fixtures::pet_jpeg;
use petportrait_tests::{Mode, TestApp};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "export", about = "Time and memory of an access export as the account grows")]
struct Args {
    #[arg(long, value_enum, default_value = "both")]
    mode: Which,
    #[arg(long, default_value_t = 100)]
    small: usize,
    #[arg(long, default_value_t = 1000)]
    large: usize,
    /// Generations saved to the gallery (before the first export).
    #[arg(long, default_value_t = 50)]
    gallery: usize,
    /// The portraits' longest side in pixels (256 to 2,048): larger files, a larger archive.
    #[arg(long, default_value_t = 256)]
    max_side: u32,
    /// The portraits' style (pixel art compresses to little; watercolor does not).
    #[arg(long, default_value = "pixel_art")]
    style: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("| mode | generations | gallery items | export (s) | archive (MiB) | memory added at peak (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &mode in args.mode.modes() {
        let name = match mode {
            Mode::Embedded => "embedded",
            Mode::Distributed => "distributed",
            Mode::Cluster => "cluster",
        };
        let vars = [
            ("USER_MAX_RUNNING", "0"),
            ("WORKER_CONCURRENCY", "2"),
            ("STARTER_CREDITS", "100000"),
            ("RATE_LIMIT_GENERATIONS", "off"),
            ("RUST_LOG", "error"),
        ];
        let app = TestApp::spawn(mode, &vars).await;
        let ann = app.user("Ann").await;
        let upload = ann.upload_ok(pet_jpeg()).await;
        let mut made = make(&ann, &upload, args.small, args.max_side, &args.style).await?;
        for id in made.iter().take(args.gallery) {
            let (status, body) = ann.post_json(&format!("/v1/generations/{id}/save"), &json!({})).await;
            anyhow::ensure!(status.as_u16() == 201, "save: {status} {body}");
        }
        for target in [args.small, args.large] {
            made.extend(make(&ann, &upload, target.saturating_sub(made.len()), args.max_side, &args.style).await?);
            let run = export(&ann).await?;
            println!(
                "| {name} | {} | {} | {:.2} | {:.1} | {:.1} |",
                made.len(),
                args.gallery.min(made.len()),
                run.seconds,
                run.bytes as f64 / 1_048_576.0,
                run.peak_added_kib as f64 / 1024.0
            );
        }
        app.stop().await;
    }
    Ok(())
}

/// Makes `n` generations and waits until they have all succeeded; returns their ids.
async fn make(client: &Client, upload: &str, n: usize, max_side: u32, style: &str) -> anyhow::Result<Vec<String>> {
    let order = json!({
        "kind": "portrait", "upload_id": upload, "style": style,
        "options": {"max_side": max_side, "format": "png"},
    });
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, body) = client.post_json("/v1/generations", &order).await;
        anyhow::ensure!(status.as_u16() == 202, "create: {status} {body}");
        ids.push(body["id"].as_str().context("an id")?.to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    for id in &ids {
        loop {
            let (_, body): (_, Value) = client.get(&format!("/v1/generations/{id}")).await;
            match body["status"].as_str() {
                Some("succeeded") => break,
                Some("failed" | "canceled") => anyhow::bail!("generation {id} ended {body}"),
                _ => {}
            }
            anyhow::ensure!(Instant::now() < deadline, "the generations did not finish within 30 minutes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(ids)
}

struct Run {
    seconds: f64,
    bytes: u64,
    peak_added_kib: u64,
}

/// Requests an export, waits for it, and measures it.
async fn export(client: &Client) -> anyhow::Result<Run> {
    let before = status_kib("VmRSS:")?;
    // Writing 5 resets the peak resident set to the current one.
    std::fs::write("/proc/self/clear_refs", "5").context("reset VmHWM")?;
    let (status, request) = client.post_json("/v1/privacy/exports", &json!({})).await;
    anyhow::ensure!(status.as_u16() == 202, "export: {status} {request}");
    let id = request["id"].as_str().context("an id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let (_, body): (_, Value) = client.get(&format!("/v1/privacy/requests/{id}")).await;
        match body["status"].as_str() {
            Some("completed") => break body,
            Some("failed") => anyhow::bail!("the export failed: {body}"),
            _ => {}
        }
        anyhow::ensure!(Instant::now() < deadline, "the export did not finish within 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let peak = status_kib("VmHWM:")?;
    let millis =
        |field: &str| done[field].as_str().and_then(petportrait_core::time::parse_rfc3339).context("a timestamp");
    let seconds = (millis("completed_at")? - millis("created_at")?) as f64 / 1000.0;
    let (status, bytes) = client.download(done["download_url"].as_str().context("a link")?).await;
    anyhow::ensure!(status.as_u16() == 200, "download: {status}");
    Ok(Run { seconds, bytes: bytes.len() as u64, peak_added_kib: peak.saturating_sub(before) })
}

/// A `kB` field of `/proc/self/status`.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with(field)).context("the field")?;
    Ok(line.split_whitespace().nth(1).context("a number")?.parse()?)
}
