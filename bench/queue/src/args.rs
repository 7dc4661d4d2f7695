//! Command-line options: `queue-bench <subcommand> --name value ...`, the same shape as the
//! BullMQ runner's, so bench/run can call either with the same flags.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{Context, bail};

/// The options a subcommand accepts, with their defaults (as text, parsed on use).
fn defaults(command: &str) -> Option<&'static [(&'static str, &'static str)]> {
    let known: &'static [(&'static str, &'static str)] = match command {
        "drain" => &[
            ("engine", "ours"),
            ("queue", "bench"),
            ("url", ""),
            ("jobs", "100000"),
            ("concurrency", "50"),
            ("timeout-s", "900"),
            ("lease-ms", "30000"),
            ("push-parallel", "1"),
            ("batch-size", "0"),
            ("poll-ms", "0"),
            ("prefetch", "0"),
        ],
        "steady" => &[
            ("engine", "ours"),
            ("queue", "bench"),
            ("url", ""),
            ("rate", "1000"),
            ("seconds", "20"),
            ("warmup", "5"),
            ("concurrency", "50"),
            ("grace-s", "5"),
            ("batch-size", "0"),
            ("poll-ms", "0"),
            ("prefetch", "0"),
        ],
        "pickup" => &[
            ("engine", "ours"),
            ("queue", "bench"),
            ("url", ""),
            ("samples", "20"),
            ("batch-size", "0"),
            ("poll-ms", "0"),
            ("prefetch", "0"),
        ],
        "crash" => &[
            ("engine", "ours"),
            ("queue", "bench"),
            ("url", ""),
            ("jobs", "1000"),
            ("job-ms", "2000"),
            ("kill-after-ms", "1000"),
            ("concurrency", "1000"),
            ("lease-ms", "30000"),
            ("deadline-s", "0"),
            ("batch-size", "0"),
            ("poll-ms", "0"),
            ("prefetch", "0"),
        ],
        "steady-worker" => &[
            ("engine", "ours"),
            ("queue", "bench"),
            ("url", ""),
            ("concurrency", "50"),
            ("batch-size", "0"),
            ("poll-ms", "0"),
            ("prefetch", "0"),
        ],
        "crash-worker" => &[
            ("engine", "ours"),
            ("queue", "bench"),
            ("url", ""),
            ("concurrency", "1000"),
            ("job-ms", "2000"),
            ("lease-ms", "30000"),
            ("batch-size", "0"),
            ("poll-ms", "0"),
            ("prefetch", "0"),
        ],
        _ => return None,
    };
    Some(known)
}

#[derive(Debug)]
pub struct Args {
    pub command: String,
    values: HashMap<&'static str, String>,
}

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Args> {
        let usage = "usage: queue-bench <drain|steady|pickup|crash> [--name value ...]";
        let command = argv.next().context(usage)?;
        let Some(known) = defaults(&command) else { bail!("unknown subcommand {command:?}; {usage}") };
        let mut values: HashMap<&'static str, String> =
            known.iter().map(|(key, value)| (*key, (*value).to_owned())).collect();
        while let Some(flag) = argv.next() {
            let Some(name) = flag.strip_prefix("--") else { bail!("unexpected argument {flag:?}") };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (name.to_owned(), argv.next().with_context(|| format!("missing value for --{name}"))?),
            };
            let Some((key, _)) = known.iter().find(|(key, _)| *key == name) else {
                bail!("unknown option --{name} for {command}")
            };
            values.insert(key, value);
        }
        Ok(Args { command, values })
    }

    pub fn text(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or_default()
    }

    pub fn number<T: FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.text(key).parse().with_context(|| format!("--{key} must be a number, not {:?}", self.text(key)))
    }

    /// The flags to hand a child process so it sees the same engine, queue and tuning.
    pub fn forward(&self, keys: &[&str]) -> Vec<String> {
        keys.iter().flat_map(|key| [format!("--{key}"), self.text(key).to_owned()]).collect()
    }
}
