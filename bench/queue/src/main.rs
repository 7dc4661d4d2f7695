//! `queue-bench`: one benchmark run per invocation, against our queue engine or
//! apalis-redis, printing exactly one JSON line on stdout (logs go to stderr). It mirrors
//! bench/bullmq/runner.mjs: the same subcommands, flags and fields.
//!
//! ```text
//! queue-bench drain  --engine E --jobs 100000 --concurrency 50 --queue NAME
//! queue-bench steady --engine E --rate 1000 --seconds 20 --warmup 5 --concurrency 50 --queue NAME
//! queue-bench pickup --engine E --samples 20 --queue NAME
//! queue-bench crash  --engine E --jobs 1000 --job-ms 2000 --kill-after-ms 1000 --concurrency 1000 --lease-ms 30000 --queue NAME
//! ```
//!
//! `steady-worker` and `crash-worker` are hidden subcommands the benchmark starts as child
//! processes. Engines: `ours`, `apalis-redis`, `apalis-redis-tuned` (see engine.rs).
//! Redis: `--url` or `REDIS_URL` (default redis://127.0.0.1:6379).

mod args;
mod child;
mod crash;
mod drain;
mod engine;
mod pickup;
mod steady;
mod worker;

use std::io::Write;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

use crate::args::Args;
use crate::engine::Setup;

/// A JSON object whose fields keep the order they were added in, like the Node runner's.
#[derive(Debug, Default)]
pub struct Report(Vec<(&'static str, Value)>);

impl Report {
    pub fn new(setup: &Setup, workload: &str) -> Report {
        Report::default().with("engine", setup.engine.name()).with("workload", workload)
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Report {
        self.set(key, value);
        self
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value.into()));
    }
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Rounds for the report (the Node runner keeps three decimals for milliseconds).
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A number as JSON: whole numbers without a fraction (`1000`, not `1000.0`), as in
/// the Node runner's output.
pub fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9e15 { Value::from(value as i64) } else { Value::from(value) }
}

/// The nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn emit(report: &Report) {
    let line = serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":\"report: {e}\"}}"));
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

async fn run(args: Args) -> anyhow::Result<Option<Report>> {
    let setup = Setup::from_args(&args)?;
    Ok(match args.command.as_str() {
        "drain" => Some(drain::run(&args, &setup).await),
        "steady" => Some(steady::run(&args, &setup).await),
        "pickup" => Some(pickup::run(&args, &setup).await),
        "crash" => Some(crash::run(&args, &setup).await),
        "steady-worker" => {
            steady::worker(&setup).await?;
            None
        }
        "crash-worker" => {
            crash::worker(&args, &setup).await?;
            None
        }
        other => anyhow::bail!("unknown subcommand {other:?}"),
    })
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("queue-bench: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("queue-bench: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args));
    // Workers and connections may still hold tasks; the result is out, so do not wait.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(Some(report)) => {
            emit(&report);
            std::process::ExitCode::SUCCESS
        }
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("queue-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
