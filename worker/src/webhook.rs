//! The webhook delivery job: claim an attempt (at most `WEBHOOK_ENDPOINT_CONCURRENCY`
//! in flight per endpoint), POST the signed body through the SSRF-safe client, record
//! what came back, and schedule the next attempt. Idempotent: a job for a delivery that
//! finished, is not due or is held by another attempt does nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use petportrait_core::db::{AttemptRecord, ClaimedDelivery, DeliveryClaim, Verdict};
use petportrait_core::errors::error_chain;
use petportrait_core::outbound::is_refusal;
use petportrait_core::queue::{DeliveryJob, JobOutcome};
use petportrait_core::time::{duration_ms, now_ms, rfc3339};
use petportrait_core::webhooks::schedule::{next_delay, parse_retry_after};
use petportrait_core::webhooks::signature_header;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tracing::Instrument;

use crate::WorkerState;

/// How much of an answer the log keeps (and reads).
const EXCERPT_BYTES: usize = 1024;

pub async fn handle(state: Arc<WorkerState>, job: DeliveryJob) -> JobOutcome {
    let span = tracing::info_span!(
        "job_run",
        job.kind = "webhook",
        webhook.delivery = %job.delivery_id,
        request.id = tracing::field::Empty
    );
    async move {
        match deliver(&state, &job.delivery_id).await {
            Ok(()) => JobOutcome::Done,
            Err(error) => {
                tracing::warn!(error = %error_chain(error.as_ref()), "could not record the attempt; the queue will deliver again");
                JobOutcome::Retry(error)
            }
        }
    }
    .instrument(span)
    .await
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn deliver(state: &WorkerState, id: &str) -> Result<(), BoxError> {
    let webhooks = &state.services.webhooks;
    let config = webhooks.config();
    let now = now_ms();
    let lease_until = now + duration_ms(config.timeout + Duration::from_secs(10));
    let claim = state.services.db.claim_delivery(id, now, lease_until, config.endpoint_concurrency).await?;
    let delivery = match claim {
        DeliveryClaim::Claimed(delivery) => delivery,
        DeliveryClaim::Finished | DeliveryClaim::NotDue | DeliveryClaim::EndpointDisabled => return Ok(()),
        DeliveryClaim::Leased | DeliveryClaim::EndpointBusy => {
            // The attempt in the way hands its slot on when it ends (below); if its
            // worker dies instead, the scheduler finds this delivery overdue and pushes it.
            tracing::debug!("the endpoint is busy; a finishing attempt will hand its slot on");
            return Ok(());
        }
    };
    // The log lines of a generation's events carry the request that created it.
    if let Some(request) = &delivery.request_id {
        tracing::Span::current().record("request.id", request.as_str());
    }
    let (record, verdict) = attempt(state, &delivery).await;
    let now = now_ms();
    let disable_before = now - duration_ms(config.disable_after);
    let reason = disable_reason(&record, config.disable_after);
    if !state.services.db.finish_attempt(&delivery, &record, &verdict, now, disable_before, &reason).await? {
        tracing::info!("another attempt took this delivery over; its outcome stands");
        return Ok(());
    }
    tracing::info!(
        webhook.endpoint = %delivery.endpoint_id,
        webhook.event = %delivery.event_type,
        webhook.attempt = delivery.attempts,
        http.status = record.status_code,
        duration_ms = record.duration_ms,
        outcome = verdict_name(&verdict),
        "webhook attempt"
    );
    metrics::counter!(petportrait_core::metrics::WEBHOOK_DELIVERIES, "outcome" => verdict_name(&verdict)).increment(1);
    if let Verdict::RetryAt(at) = verdict {
        let delay = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
        webhooks.push(id, &format!("attempt-{}", delivery.attempts + 1), delay).await;
    }
    // This attempt's slot is free: hand it to the endpoint's oldest delivery waiting for
    // one (each attempt frees one slot, so one job; if another takes the slot first,
    // that attempt hands it on when it ends).
    let waiting = state.services.db.waiting_deliveries(&delivery.endpoint_id, now, 1).await?;
    for next in waiting {
        webhooks.push(&next, &format!("slot-{}", ulid::Ulid::generate()), Duration::ZERO).await;
    }
    Ok(())
}

/// Makes one attempt and decides what follows it.
async fn attempt(state: &WorkerState, delivery: &ClaimedDelivery) -> (AttemptRecord, Verdict) {
    let webhooks = &state.services.webhooks;
    let config = webhooks.config();
    let started_at = now_ms();
    let clock = Instant::now();
    let finish = |status_code: Option<i64>, error: Option<String>, excerpt: Option<String>| AttemptRecord {
        started_at,
        duration_ms: i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX),
        status_code,
        error,
        response_excerpt: excerpt,
    };
    let secrets =
        match webhooks.signing_secrets(&delivery.endpoint_id, delivery.secret.as_deref(), &delivery.user_id).await {
            Ok(secrets) => secrets,
            Err(error) => {
                let record = finish(None, Some(format!("could not read the signing secret: {error}")), None);
                return (record, retry_or_fail(state, delivery, None));
            }
        };
    let url = match webhooks.outbound().check_url(&delivery.url) {
        Ok(url) => url,
        Err(error) => return (finish(None, Some(error.to_string()), None), Verdict::Failed),
    };
    let timestamp = started_at / 1000;
    let signature = signature_header(&secrets, &delivery.id, timestamp, delivery.body.as_bytes());
    let request = webhooks
        .outbound()
        .request(reqwest::Method::POST, url)
        .timeout(config.timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone());
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if is_refusal(&error) => {
            // The host now resolves to an internal address: no retry can fix that.
            return (finish(None, Some(format!("refused: {}", error_chain(&error))), None), Verdict::Failed);
        }
        Err(error) => {
            let text = if error.is_timeout() {
                format!("no answer within {} s", config.timeout.as_secs())
            } else {
                error_chain(&error)
            };
            return (finish(None, Some(text), None), retry_or_fail(state, delivery, None));
        }
    };
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let excerpt = read_excerpt(response, config.timeout).await;
    let code = Some(i64::from(status.as_u16()));
    if status.is_success() {
        return (finish(code, None, excerpt), Verdict::Delivered);
    }
    if status == reqwest::StatusCode::GONE {
        let reason = format!("the endpoint answered 410 Gone at {}", rfc3339(now_ms()));
        return (
            finish(code, Some("410 Gone: the endpoint is disabled".into()), excerpt),
            Verdict::EndpointGone(reason),
        );
    }
    let error = if status.is_redirection() { "redirects are not followed" } else { "not a 2xx answer" };
    (finish(code, Some(error.into()), excerpt), retry_or_fail(state, delivery, retry_after))
}

/// The next attempt's time on the schedule, or `Failed` when none is left (or the
/// owner asked for this one attempt).
fn retry_or_fail(state: &WorkerState, delivery: &ClaimedDelivery, retry_after: Option<Duration>) -> Verdict {
    if delivery.manual != 0 {
        return Verdict::Failed;
    }
    let schedule = &state.services.webhooks.config().retry_schedule;
    match next_delay(schedule, delivery.attempts, retry_after, &mut rand::rng()) {
        Some(delay) => Verdict::RetryAt(now_ms() + duration_ms(delay)),
        None => Verdict::Failed,
    }
}

/// The first KiB of the answer, as text; the rest is never read.
async fn read_excerpt(response: reqwest::Response, deadline: Duration) -> Option<String> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= EXCERPT_BYTES {
                break;
            }
        }
    };
    // The timeout of the request covers the body too; this bounds a trickle.
    let _ = tokio::time::timeout(deadline, read).await;
    body.truncate(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&body).into_owned();
    (!text.is_empty()).then_some(text)
}

fn disable_reason(record: &AttemptRecord, after: Duration) -> String {
    let last = match (record.status_code, &record.error) {
        (Some(code), _) => format!("HTTP {code}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".into(),
    };
    format!("every attempt failed for {} (the last: {last})", config_duration(after))
}

/// A duration as the configuration writes it (`5d`, `36h`, `90s`, `250ms`).
fn config_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|(unit, _)| ms >= *unit && ms.is_multiple_of(*unit))
        .map_or_else(|| format!("{ms}ms"), |(unit, name)| format!("{}{name}", ms / unit))
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Delivered => "delivered",
        Verdict::RetryAt(_) => "retry",
        Verdict::Failed => "failed",
        Verdict::EndpointGone(_) => "endpoint_gone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_configured() {
        assert_eq!(config_duration(Duration::from_secs(5 * 86_400)), "5d");
        assert_eq!(config_duration(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(config_duration(Duration::from_secs(90)), "90s");
        assert_eq!(config_duration(Duration::from_millis(1)), "1ms");
    }
}
