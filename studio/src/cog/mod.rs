//! `CogStudio`: models in self-hosted Cog containers (Replicate's open-source packaging,
//! whose HTTP server, coglet, is the one Replicate runs).
//!
//! - **Synchronous predictions.** `PUT {server}/predictions/{id}` with `{id, input}`
//!   and no `Prefer: respond-async`: the answer is the finished prediction. Cog's
//!   asynchronous mode reports by webhook, which would need every worker to be
//!   reachable from the GPU hosts and to authenticate unsigned callbacks; the worker
//!   waits for the prediction anyway (it holds the generation's lease). And the
//!   synchronous mode ties the prediction to our connection: Cog cancels a prediction
//!   whose client went away, so a worker that dies leaves nothing running at our
//!   expense. The price is that there is no progress between start and end.
//! - **Ids.** The prediction id is the attempt's idempotency key
//!   (`{generation}-a{attempt}`): a PUT repeated with an id still running answers 202
//!   with that prediction instead of starting another. After a server was lost
//!   mid-prediction the next server gets `{key}-s{n}`.
//! - **Servers.** A route (kind and style) lists servers; each has its slots
//!   (`#concurrency=N`, default `COG_CONCURRENCY`). A render takes a slot on the least
//!   loaded server whose health allows it, waiting when all are full. A 409 ("at
//!   capacity": another process holds the slot) pauses that server briefly; a server
//!   that drops the connection or answers 503 is marked down until its health check
//!   says otherwise, and the prediction moves to another server of the route (the
//!   generation was charged once, before the render).
//! - **Cancel and deadline.** The generation's cancel flag and `COG_TIMEOUT` are
//!   watched while the PUT is open; either sends `POST /predictions/{id}/cancel`, then
//!   the answer (`canceled`) is awaited briefly before the connection is dropped.
//! - **Outputs** are data URLs in the answer (run the server without `--upload-url`),
//!   the answer read up to `COG_MAX_OUTPUT_BYTES`, each file typed by its bytes.
//! - **Errors.** `failed` → by its message, as for the remote provider: `model_failed`
//!   (permanent, refunded), `content_policy`, or retried when it says to retry; 422 (our
//!   input does not fit the model) → `model_rejected_request`; every server down, 503,
//!   5xx, 408/429 from a proxy, a lost connection on the last server, a deadline →
//!   unavailable or timed out, retried by the worker.
//! - **Memory.** The answer is read up to `COG_MAX_OUTPUT_BYTES` (base64 included);
//!   twice its size is reserved from the process's budget for its parsed copy and the
//!   decoded files.
//! - **Health** (`health.rs`): every `COG_HEALTH_INTERVAL` each server's
//!   `/health-check` is read; the first time a server answers, its `/openapi.json`
//!   input schema (when it serves one) is checked against the templates of its routes.

mod answer;
mod health;
mod inputs;
mod pool;
mod protocol;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::time::Instant;

use self::pool::{Choice, Lease, Pool, Server};
use self::protocol::Health;
use super::remote::{photo_data_uri, read_capped};
use super::{RenderContext, RenderRequest, RenderedFile, Studio, StudioError};
use petportrait_core::config::{COG_CANCEL_GRACE, CogConfig, CogRoute, UploadLimits};
use petportrait_core::domain::ModelAvailability;
use petportrait_core::metrics as m;

pub use self::health::CogSetupError;

/// How often a wait looks at the cancel flag and the deadline.
const WATCH_SLICE: Duration = Duration::from_millis(100);
/// The most output files one prediction may return.
const MAX_OUTPUTS: usize = 8;

/// What went wrong with one Cog server; the source of the `StudioError`.
#[derive(Debug, thiserror::Error)]
pub enum CogError {
    #[error("no Cog server for {kind}/{style} accepts predictions: {states}")]
    NoServer { kind: &'static str, style: String, states: String },
    #[error("{server}: the request failed")]
    Transport {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{server}: HTTP {status}: {body}")]
    Status { server: String, status: u16, body: String },
    #[error("{server}: the answer cannot be read: {detail}")]
    BadAnswer { server: String, detail: String },
    #[error("{server}: prediction {id} failed: {error}")]
    Failed { server: String, id: String, error: String },
    #[error("{server}: prediction {id} was canceled by the server")]
    CanceledByServer { server: String, id: String },
    #[error("{server}: prediction {id}, output {index}: {detail}")]
    BadOutput { server: String, id: String, index: usize, detail: String },
}

/// The Cog servers of every `cog` kind, shared by every render of the process.
pub struct CogStudio {
    inner: Arc<Inner>,
    runtime: Handle,
}

struct Inner {
    config: CogConfig,
    limits: UploadLimits,
    http: reqwest::Client,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for CogStudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<&str> = self.inner.pool.servers.iter().map(|s| s.url.as_str()).collect();
        f.debug_struct("CogStudio").field("servers", &servers).finish_non_exhaustive()
    }
}

/// How one prediction on one server ended, when the render goes on.
enum Setback {
    /// The server's slots were taken (409) or our id was still running (202).
    AtCapacity,
    /// The server went away or is not set up: try another.
    ServerLost(StudioError),
}

impl CogStudio {
    /// The studio, after one round of health checks and input-schema checks; fails when
    /// a server that answers has a schema our templates do not fit. Health checks then
    /// go on every `COG_HEALTH_INTERVAL` on `runtime` (multi-threaded) while the studio
    /// lives.
    pub async fn connect(config: &CogConfig, limits: UploadLimits) -> Result<CogStudio, CogSetupError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            // The photo goes to the configured server, never through a proxy the
            // environment happens to name.
            .no_proxy()
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            // A Cog server never redirects; following one would send the photo elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("petportrait/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(CogSetupError::Client)?;
        let servers = config.servers.iter().map(|s| Arc::new(Server::new(s))).collect();
        let inner = Arc::new(Inner { config: config.clone(), limits, http, pool: Arc::new(Pool::new(servers)) });
        inner.check_all().await?;
        health::watch(Arc::downgrade(&inner), config.health_interval);
        Ok(CogStudio { inner, runtime: Handle::current() })
    }
}

impl Studio for CogStudio {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        let Some(route) = self.inner.config.route(request.kind, &request.style) else {
            return Err(match self.inner.config.routes.iter().any(|r| r.kind == request.kind) {
                true => StudioError::UnknownStyle(request.style.clone()),
                false => StudioError::Unsupported { kind: request.kind.as_str() },
            });
        };
        ctx.checkpoint(2, "preparing")?;
        let photo = photo_data_uri(request, &self.inner.limits, ctx)?;
        let input = inputs::fill(&route.input, request, &photo);
        // A blocking thread: `block_on` is allowed here (see `remote`'s notes).
        self.runtime.block_on(self.inner.run(request, route, input, ctx))
    }

    fn availability(&self) -> Vec<ModelAvailability> {
        self.inner.availability()
    }
}

impl Inner {
    async fn run(
        &self,
        request: &RenderRequest,
        route: &CogRoute,
        input: serde_json::Value,
        ctx: &RenderContext,
    ) -> Result<Vec<RenderedFile>, StudioError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut lost: Vec<String> = Vec::new();
        let mut last_loss = None;
        loop {
            // Never a new prediction for a render that is over (after a lost server or a 409).
            if ctx.is_canceled() {
                return Err(StudioError::Canceled);
            }
            if Instant::now() >= deadline {
                return Err(StudioError::TimedOut { after: self.config.timeout });
            }
            let lease = match self.take_slot(route, &lost, ctx, deadline).await {
                Ok(lease) => lease,
                // Every server of the route failed this render: the last failure says why.
                Err(StudioError::Unavailable(_)) if last_loss.is_some() => {
                    return Err(last_loss.expect("checked"));
                }
                Err(other) => return Err(other),
            };
            ctx.checkpoint(10, "predicting")?;
            let id = match lost.len() {
                0 => request.idempotency_key.clone(),
                n => format!("{}-s{n}", request.idempotency_key),
            };
            match self.predict(&lease, &id, &input, request, ctx, deadline).await {
                Ok(files) => return Ok(files),
                Err(Ok(Setback::AtCapacity)) => lease.server.pause(),
                Err(Ok(Setback::ServerLost(error))) => {
                    tracing::warn!(
                        cog.server = %lease.server.url,
                        prediction.id = %id,
                        error = %petportrait_core::errors::error_chain(&error),
                        "Cog server lost the prediction; trying another server"
                    );
                    lost.push(lease.server.url.clone());
                    last_loss = Some(error);
                }
                Err(Err(error)) => return Err(error),
            }
        }
    }

    /// A slot on one of the route's servers (not one this render lost a prediction
    /// on), waiting while they are full and watching the cancel flag and the deadline.
    async fn take_slot(
        &self,
        route: &CogRoute,
        avoid: &[String],
        ctx: &RenderContext,
        deadline: Instant,
    ) -> Result<Lease, StudioError> {
        let mut reported = false;
        loop {
            let freed = self.pool.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.pool.choose(&route.servers, avoid) {
                Choice::Leased(lease) => return Ok(lease),
                Choice::NoneUsable(states) => {
                    let style = route.style.to_owned();
                    let error = CogError::NoServer { kind: route.kind.as_str(), style, states };
                    return Err(StudioError::Unavailable(Box::new(error)));
                }
                Choice::Wait if !reported => {
                    ctx.checkpoint(5, "waiting for the model")?;
                    reported = true;
                }
                Choice::Wait => {}
            }
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep(WATCH_SLICE) => {}
            }
            if ctx.is_canceled() {
                return Err(StudioError::Canceled);
            }
            if Instant::now() >= deadline {
                return Err(StudioError::TimedOut { after: self.config.timeout });
            }
        }
    }

    /// One prediction on the leased server: `Ok` files, `Err(Ok(setback))` to try again,
    /// `Err(Err(error))` to end the render.
    async fn predict(
        &self,
        lease: &Lease,
        id: &str,
        input: &serde_json::Value,
        request: &RenderRequest,
        ctx: &RenderContext,
        deadline: Instant,
    ) -> Result<Vec<RenderedFile>, Result<Setback, StudioError>> {
        let server = &lease.server;
        let started = Instant::now();
        let body = Bytes::from(serde_json::json!({"id": id, "input": input}).to_string());
        let put = self
            .http
            .put(format!("{}/predictions/{id}", server.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(deadline.saturating_duration_since(Instant::now()) + COG_CANCEL_GRACE)
            .send();
        let answer = async {
            let response = put.await?;
            let status = response.status();
            let body = read_capped(response, self.config.max_output_bytes.saturating_mul(4) / 3 + 64 * 1024).await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        tokio::pin!(answer);
        // Why we asked the server to stop, if we did.
        let mut stopped: Option<StudioError> = None;
        let mut grace_until = None;
        let answer = loop {
            tokio::select! {
                answer = &mut answer => break Some(answer),
                () = tokio::time::sleep(WATCH_SLICE) => {}
            }
            if stopped.is_none() {
                if ctx.is_canceled() {
                    stopped = Some(StudioError::Canceled);
                } else if Instant::now() >= deadline {
                    stopped = Some(StudioError::TimedOut { after: self.config.timeout });
                }
                if stopped.is_some() {
                    // Sent beside the open PUT, which keeps being watched.
                    self.cancel(server, id);
                    grace_until = Some(Instant::now() + COG_CANCEL_GRACE);
                }
            } else if grace_until.is_some_and(|until| Instant::now() >= until) {
                // Dropping the connection cancels it at the server too.
                break None;
            }
        };
        // The answer's parsed copy and the decoded files are reserved from the process's
        // memory budget before they are made (the body itself is capped).
        let _memory = match &answer {
            Some(Ok((_, Some(body)))) => match ctx.memory().reserve(body.len() as u64 * 2).await {
                Ok(reservation) => Some(reservation),
                Err(over) => return Err(Err(StudioError::ModelFailed(Box::new(over)))),
            },
            _ => None,
        };
        let mut predict_time = None;
        let outcome = self.read_answer(server, id, answer, stopped, request, &mut predict_time);
        let took = started.elapsed();
        if matches!(outcome, Err(Ok(Setback::AtCapacity))) {
            // Another process holds its slots (each process counts only its own).
            tracing::info!(cog.server = %server.url, prediction.id = %id, "Cog server at capacity; trying again");
            return outcome;
        }
        let figures = server.record(outcome.is_ok(), took);
        let result = match &outcome {
            Ok(_) => "succeeded",
            Err(Ok(_)) => "server lost",
            Err(Err(StudioError::Canceled)) => "canceled",
            Err(Err(StudioError::TimedOut { .. })) => "timed out",
            Err(Err(_)) => "failed",
        };
        let labels = [("provider", "cog".to_owned()), ("server", server.url.clone())];
        metrics::counter!(m::PREDICTIONS, &[labels[0].clone(), labels[1].clone(), ("result", result.to_owned())])
            .increment(1);
        metrics::histogram!(m::PREDICTION_DURATION, &labels).record(took.as_secs_f64());
        tracing::info!(
            cog.server = %server.url,
            prediction.id = %id,
            generation.kind = request.kind.as_str(),
            generation.style = %request.style,
            result,
            took_ms = took.as_millis() as u64,
            predict_ms = predict_time.map(|s: f64| (s * 1000.0) as u64),
            server.in_flight = figures.in_flight,
            server.succeeded = figures.succeeded,
            server.failed = figures.failed,
            server.p50_ms = figures.p50_ms,
            server.p95_ms = figures.p95_ms,
            "Cog prediction ended"
        );
        outcome
    }

    /// Asks the server to cancel, in a task of its own (the render keeps watching the
    /// answer), within the cancel grace: a failure leaves the dropped connection to end
    /// the prediction.
    fn cancel(&self, server: &Server, id: &str) {
        let request = self
            .http
            .post(format!("{}/predictions/{id}/cancel", server.url))
            .timeout(self.config.request_timeout.min(COG_CANCEL_GRACE));
        let (server, id) = (server.url.clone(), id.to_owned());
        tokio::spawn(async move {
            match request.send().await {
                Ok(response) => {
                    tracing::info!(cog.server = %server, prediction.id = %id, status = response.status().as_u16(), "asked the Cog server to cancel the prediction")
                }
                Err(error) => {
                    tracing::warn!(cog.server = %server, prediction.id = %id, error = %petportrait_core::errors::error_chain(&error), "could not ask the Cog server to cancel; dropping the connection instead")
                }
            }
        });
    }

    /// Per route: available when one of its servers is ready or busy.
    fn availability(&self) -> Vec<ModelAvailability> {
        self.config
            .routes
            .iter()
            .map(|route| {
                let servers: Vec<&Arc<Server>> = route.servers.iter().filter_map(|url| self.pool.server(url)).collect();
                let states: Vec<(&str, Health)> = servers.iter().map(|s| (s.url.as_str(), s.health())).collect();
                let available = states.iter().any(|(_, health)| health.is_serving());
                let detail = states
                    .iter()
                    .map(|(url, health)| format!("{url} {}", health.describe()))
                    .collect::<Vec<_>>()
                    .join(", ");
                ModelAvailability { kind: route.kind, style: route.style.to_owned(), available, detail }
            })
            .collect()
    }
}
