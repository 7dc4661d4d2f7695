//! `GET /metrics` and the layer that counts every routed request by its route template
//! (never the raw path: ids would make a series per generation).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use petportrait_core::metrics as m;
use petportrait_core::time::now_ms;

use crate::AppState;

/// A request no route took (404) or whose route takes no such method (405): counted
/// under the route `unmatched`, so probing paths never makes new series.
pub fn count_unrouted(method: &axum::http::Method, status: u16) {
    metrics::counter!(m::HTTP_REQUESTS, "method" => method_label(method), "route" => "unmatched", "status" => status.to_string())
        .increment(1);
}

fn method_label(method: &axum::http::Method) -> String {
    match method.as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => known.to_owned(),
        _ => "other".to_owned(),
    }
}

/// Counts the request and times it until its response starts (a stream's body, such as
/// an event stream, is not waited for).
pub async fn record(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(m::HTTP_DURATION, "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// Whether the ledger's totals (a whole-table scan) are due again: at most once a
/// minute per process, however often it is scraped.
fn ledger_due() -> bool {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let due = last.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60));
    if due {
        *last = Some(Instant::now());
    }
    due
}

/// Serves only `GET /metrics` on `listener` until `shutdown`: the worker's and the
/// scheduler's `METRICS_PORT`.
pub async fn serve_metrics_only(
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m::render())
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// The Prometheus text exposition of this process, with the queues' depth and lag and
/// the ledger's totals read now (a source that does not answer leaves its gauges as
/// they were, and says so in the log).
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let services = &state.services;
    match services.queue.counts().await {
        Ok(counts) => {
            for (name, value) in
                [("ready", counts.ready), ("delayed", counts.delayed), ("active", counts.active), ("dead", counts.dead)]
            {
                metrics::gauge!(m::QUEUE_JOBS, "queue" => "generation", "state" => name).set(value as f64);
            }
        }
        Err(error) => {
            tracing::warn!(error = %petportrait_core::errors::error_chain(&error), "metrics: the queue's counts could not be read")
        }
    }
    let now = now_ms();
    match services.db.backlog(now).await {
        Ok(backlog) => {
            let lag = |since: Option<i64>| since.map_or(0.0, |since| (now - since).max(0) as f64 / 1000.0);
            metrics::gauge!(m::QUEUE_LAG, "queue" => "generation").set(lag(backlog.generation_waiting_since));
            metrics::gauge!(m::QUEUE_LAG, "queue" => "webhook").set(lag(backlog.delivery_due_since));
            metrics::gauge!(m::QUEUE_JOBS, "queue" => "webhook", "state" => "ready").set(backlog.deliveries_due as f64);
            metrics::gauge!(m::QUEUE_JOBS, "queue" => "webhook", "state" => "delayed")
                .set(backlog.deliveries_delayed as f64);
        }
        Err(error) => {
            tracing::warn!(error = %petportrait_core::errors::error_chain(&error), "metrics: the backlog could not be read")
        }
    }
    match services.db.credits_held().await {
        Ok(held) => metrics::gauge!(m::CREDITS_HELD).set(held as f64),
        Err(error) => {
            tracing::warn!(error = %petportrait_core::errors::error_chain(&error), "metrics: the credits held could not be read")
        }
    }
    if ledger_due() {
        match services.db.ledger_totals().await {
            Ok(totals) => {
                for (kind, total) in totals {
                    metrics::gauge!(m::CREDITS, "kind" => kind).set(total as f64);
                }
            }
            Err(error) => {
                tracing::warn!(error = %petportrait_core::errors::error_chain(&error), "metrics: the ledger's totals could not be read")
            }
        }
    }
    let mut response = m::render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
