//! `studio-bench PHOTO [--runs N] [--concurrency C] [--write DIR]`: each style of the
//! local studio (every portrait style, the music, the sculpture), the whole render the
//! worker runs (decode with limits, EXIF orientation, resize, the style's work, encode),
//! timed `--runs` times; then `--concurrency` portrait renders at once (the worker's
//! default is one per core), with the process's peak resident memory. One JSON line per
//! measurement on stdout. With `--write DIR` it instead writes every style's files for
//! the photo into DIR, to look at (or listen to, or print).

use std::time::Instant;

use anyhow::{Context, bail};
use petportrait_core::config::UploadLimits;
use petportrait_core::domain::{CATALOGUE, GenerationKind};
use petportrait_core::output_options::OutputOptions;
use petportrait_studio::{LocalStudio, RenderContext, RenderRequest, RenderedFile, Studio};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        bail!("usage: studio-bench PHOTO [--runs N] [--concurrency C] [--write DIR]")
    };
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
    let render = |kind: GenerationKind, style: &str| -> anyhow::Result<Vec<RenderedFile>> {
        let request = RenderRequest {
            kind,
            style: style.to_owned(),
            input: input.clone(),
            orientation: None,
            options: OutputOptions::default(),
            idempotency_key: format!("bench-{style}"),
            pending_prediction: None,
        };
        Ok(studio.render(&request, &RenderContext::detached())?)
    };
    if let Some(i) = args.iter().position(|a| a == "--write") {
        let dir = std::path::Path::new(args.get(i + 1).context("a folder after --write")?);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for style in CATALOGUE {
            for file in render(style.kind, style.id)? {
                let target = dir.join(&file.filename);
                std::fs::write(&target, &file.bytes).with_context(|| format!("writing {}", target.display()))?;
                println!("{}", target.display());
            }
        }
        return Ok(());
    }
    let portraits: Vec<&str> = CATALOGUE.iter().filter(|s| s.kind == GenerationKind::Portrait).map(|s| s.id).collect();
    let render_portrait = |style: &str| render(GenerationKind::Portrait, style).map(|_| ());
    for style in CATALOGUE {
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let started = Instant::now();
            bytes = render(style.kind, style.id)?.iter().map(|f| f.bytes.len()).sum::<usize>();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let line = serde_json::json!({
            "engine": "petportrait", "kind": style.kind.as_str(), "style": style.id, "runs": runs,
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
            (0..concurrency).map(|_| scope.spawn(|| portraits.iter().try_for_each(|s| render_portrait(s)))).collect();
        for handle in handles {
            handle.join().map_err(|_| anyhow::anyhow!("a render thread panicked"))??;
        }
        Ok(())
    })?;
    let line = serde_json::json!({
        "engine": "petportrait", "workload": "concurrent", "concurrency": concurrency,
        "renders": concurrency * portraits.len(), "seconds": started.elapsed().as_secs_f64(),
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
