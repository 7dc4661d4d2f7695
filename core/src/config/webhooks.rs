//! `WEBHOOK_*`: how the platform delivers its webhooks.

use std::time::Duration;

use super::{Reader, parse_duration};

/// The Standard Webhooks schedule (Svix's): an attempt at once, then after 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h and 10 h: about 27.5 hours in all.
pub const DEFAULT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `WEBHOOK_RETRY_SCHEDULE`: the delay before each attempt of a delivery, the first
    /// one's included; a delivery fails for good once every attempt has failed.
    pub retry_schedule: Vec<Duration>,
    /// `WEBHOOK_TIMEOUT`: how long an endpoint has to answer an attempt.
    pub timeout: Duration,
    /// `WEBHOOK_DISABLE_AFTER`: an endpoint that has failed every attempt for this long
    /// is disabled, with the reason shown to its owner.
    pub disable_after: Duration,
    /// `WEBHOOK_SECRET_OVERLAP`: how long the account's previous secret still signs
    /// after a rotation, so receivers can switch without losing a message.
    pub secret_overlap: Duration,
    /// `WEBHOOK_CONCURRENCY`: attempts one worker process makes at once.
    pub concurrency: usize,
    /// `WEBHOOK_ENDPOINT_CONCURRENCY`: attempts in flight to one endpoint at once, across
    /// every worker, so a slow endpoint holds at most this many slots.
    pub endpoint_concurrency: i64,
    /// `WEBHOOK_LOG_RETENTION`: how long deliveries and their attempts are kept.
    pub log_retention: Duration,
}

/// Parses `0s,5s,5m,…` (a bare `0` is allowed too).
pub fn parse_schedule(text: &str) -> Option<Vec<Duration>> {
    let schedule: Option<Vec<Duration>> = text
        .split(',')
        .map(str::trim)
        .map(|part| if part == "0" { Some(Duration::ZERO) } else { parse_duration(part) })
        .collect();
    schedule.filter(|s| !s.is_empty() && s.len() <= 20)
}

pub(super) fn read_webhooks(r: &mut Reader<'_>) -> WebhookConfig {
    let schedule_text = r.string("WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE);
    let retry_schedule = parse_schedule(&schedule_text).unwrap_or_else(|| {
        r.problem(
            "WEBHOOK_RETRY_SCHEDULE",
            format!("expected 1 to 20 durations such as 0s,5s,5m, got {schedule_text:?}"),
        );
        parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap_or_default()
    });
    let config = WebhookConfig {
        retry_schedule,
        timeout: r.duration("WEBHOOK_TIMEOUT", Duration::from_secs(15)),
        disable_after: r.duration("WEBHOOK_DISABLE_AFTER", Duration::from_secs(5 * 86_400)),
        secret_overlap: r.duration("WEBHOOK_SECRET_OVERLAP", Duration::from_secs(86_400)),
        concurrency: r.parsed("WEBHOOK_CONCURRENCY", 16, "a positive number"),
        endpoint_concurrency: r.parsed("WEBHOOK_ENDPOINT_CONCURRENCY", 4, "a positive number"),
        log_retention: r.duration("WEBHOOK_LOG_RETENTION", Duration::from_secs(30 * 86_400)),
    };
    if config.concurrency == 0 {
        r.problem("WEBHOOK_CONCURRENCY", "must be at least 1");
    }
    if config.endpoint_concurrency < 1 {
        r.problem("WEBHOOK_ENDPOINT_CONCURRENCY", "must be at least 1");
    }
    if config.timeout > Duration::from_secs(60) {
        r.problem("WEBHOOK_TIMEOUT", "must be at most 60s");
    }
    config
}
