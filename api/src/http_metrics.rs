//! `GET /metrics` and the layer that counts every routed request by its route template
//! (never the raw path: ids would make a series per generation).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use petportrait_core::metrics as m;

use crate::AppState;

/// Counts the request and times it until its response starts (a stream's body, such as
/// an event stream, is not waited for).
pub async fn record(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => known.to_owned(),
        _ => "other".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(m::HTTP_DURATION, "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    response
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

/// The Prometheus text exposition of this process, with the queue's depth read now.
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(counts) = state.services.queue.counts().await {
        for (name, value) in
            [("ready", counts.ready), ("delayed", counts.delayed), ("active", counts.active), ("dead", counts.dead)]
        {
            metrics::gauge!(m::QUEUE_JOBS, "queue" => "generation", "state" => name).set(value as f64);
        }
    }
    let mut response = m::render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
