//! `studio-bench PHOTO [--runs N] [--concurrency C]`: each portrait style of the local
//! studio, the whole render the worker runs (decode with limits, EXIF orientation,
//! resize to the output size, the style's filters, JPEG encode), timed `--runs` times;
//! then `--concurrency` renders at once (the worker's default is one per core), with the
//! process's peak resident memory. One JSON line per measurement on stdout.

use std::time::Instant;

use anyhow::{Context, bail};
use petportrait_core::config::UploadLimits;
use petportrait_core::domain::{CATALOGUE, GenerationKind};
use petportrait_core::output_options::OutputOptions;
use petportrait_core::studio::{LocalStudio, RenderContext, RenderRequest, Studio};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else { bail!("usage: studio-bench PHOTO [--runs N] [--concurrency C]") };
    let flag = |name: &str, default: usize| -> anyhow::Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).context("a value after the flag")?.parse().context("a number"),
            None => Ok(default),
        }
    };
    let runs = flag("--runs", 5)?.max(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let concurrency = flag("--concurrency", cores)?.max(1);
    let input = bytes::Bytes::from(std::fs::read(path).with_context(|| format!("reading {path}"))?);
    let studio = LocalStudio::new(UploadLimits::default());
    let styles: Vec<&str> = CATALOGUE.iter().filter(|s| s.kind == GenerationKind::Portrait).map(|s| s.id).collect();
    let render = |style: &str| -> anyhow::Result<usize> {
        let request = RenderRequest {
            kind: GenerationKind::Portrait,
            style: style.to_owned(),
            input: input.clone(),
            options: OutputOptions::default(),
            request_id: format!("bench-{style}"),
        };
        let files = studio.render(&request, &RenderContext::detached())?;
        Ok(files.iter().map(|f| f.bytes.len()).sum())
    };
    for style in &styles {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let started = Instant::now();
            bytes = render(style)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let line = serde_json::json!({
            "engine": "petportrait", "style": style, "runs": runs,
            "median_ms": times[times.len() / 2], "min_ms": times[0], "max_ms": times[times.len() - 1],
            "output_bytes": bytes,
        });
        println!("{line}");
    }
    // Every style once on each of `concurrency` threads at the same time, as a worker
    // at that concurrency would, for the peak memory.
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> =
            (0..concurrency).map(|_| scope.spawn(|| styles.iter().try_for_each(|s| render(s).map(|_| ())))).collect();
        for handle in handles {
            handle.join().map_err(|_| anyhow::anyhow!("a render thread panicked"))??;
        }
        Ok(())
    })?;
    let line = serde_json::json!({
        "engine": "petportrait", "workload": "concurrent", "concurrency": concurrency,
        "renders": concurrency * styles.len(), "seconds": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{line}");
    Ok(())
}

/// The process's peak resident set (VmHWM), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}
