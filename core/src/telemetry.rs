//! Logging set-up shared by every binary.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber: `RUST_LOG` filtering, JSON or human-readable lines.
/// A second call (tests start several apps in one process) keeps the first subscriber.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = if log.json { builder.json().try_init() } else { builder.try_init() };
}
