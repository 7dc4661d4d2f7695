//! `RemoteStudio`: a model behind an HTTP API that speaks Replicate's predictions
//! protocol — `POST {PROVIDER_URL}/v1/predictions {version, input}` answers a
//! prediction `{id, status, output, error, logs, urls: {get, cancel}}`; we poll
//! `urls.get` until it ends, fetch the output URLs, and `POST urls.cancel` when we give
//! up on it.
//!
//! - **Polling, no webhooks.** The worker that created a prediction waits for it anyway
//!   (it holds the generation's lease and reports progress), so receiving the
//!   provider's webhook would only add a public endpoint to secure. Polls start at
//!   `PROVIDER_POLL_INTERVAL` and grow by half each time up to `PROVIDER_POLL_MAX_INTERVAL`.
//! - **Time.** Every HTTP call has `PROVIDER_REQUEST_TIMEOUT`; the whole prediction,
//!   from the start of the render (a wait for a concurrency slot included), has
//!   `PROVIDER_TIMEOUT`, after which it is canceled at the provider and the attempt
//!   fails as retryable (`StudioError::TimedOut`). The create request also carries
//!   `Cancel-After` (Replicate's header), so a prediction whose worker died ends too.
//!   Output downloads run after the prediction, each within one request timeout.
//! - **Retries.** 5xx, 408, 429 and connection errors are retried `PROVIDER_RETRIES`
//!   times with exponential backoff and jitter, or after the `Retry-After` the provider
//!   asks for (seconds or an HTTP date; over a minute, the attempt gives up instead).
//!   The create carries `Idempotency-Key: <idempotency_key>` (one per attempt of a
//!   generation), so a provider that honours it does not start a second prediction
//!   when a retry follows a lost answer; one that ignores it (Replicate today) may run
//!   a duplicate we never follow.
//! - **Limits.** At most `PROVIDER_CONCURRENCY` predictions per process at once, and a
//!   circuit breaker: after `PROVIDER_BREAKER_FAILURES` failed calls in a row (5xx,
//!   429, timeouts, connection errors, 401/403) every call fails fast as unavailable
//!   for `PROVIDER_BREAKER_COOLDOWN`, then one call probes. One `RemoteStudio` serves
//!   the whole process, so all its renders share both.
//! - **Errors.** See [`StudioError`]: a content-policy refusal is permanent (the worker
//!   fails the generation with `content_policy` and refunds it); another failure of the
//!   model is permanent (`model_failed`); a 4xx other than 401/403/408/429 on create is
//!   our request's fault (`model_rejected_request`, logged as an error); 401/403 mean
//!   our token or model access is wrong — an operator's problem, not the user's, so the
//!   attempt is retried as unavailable (logged as an error and counted by the breaker)
//!   in case the token is fixed meanwhile, and the credits come back if it is not;
//!   everything transient, an open breaker and a prediction canceled or aborted by the
//!   provider are `Unavailable`, which the worker retries with backoff.
//! - **Threads.** `render` runs on a blocking thread (the worker's `spawn_blocking`) and
//!   drives its async HTTP with `Handle::block_on` on the runtime captured at
//!   construction. That is fine on a blocking thread and would panic on one of the
//!   runtime's async worker threads, which must never call `render` directly. The
//!   runtime must be multi-threaded (its own threads drive the IO), as `#[tokio::main]`
//!   and the tests' runtimes are.
//! - **The photo** is sent as a `data:image/jpeg;base64,…` URI: decoded with the same
//!   checks as the local studio, turned upright, at most 2048 px on its longest side
//!   and re-encoded, so no EXIF metadata (such as a location) reaches the provider.

mod breaker;
mod client;
mod outputs;
mod protocol;
mod recovery;

use std::io::Cursor;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

pub(crate) use self::client::read_capped;
use self::client::{Gate, Provider, Reply, Retries};
pub(crate) use self::outputs::{decode_data_uri, output_filename};
pub(crate) use self::protocol::{Failure, classify_failure, excerpt, output_type, output_urls};
use self::protocol::{Phase, Prediction};
use super::{RenderContext, RenderRequest, RenderedFile, Studio, StudioError};
use petportrait_core::config::{ProviderConfig, UploadLimits};
use petportrait_core::domain::{GenerationKind, find_style};

/// The longest side of the photo sent to the provider.
const INPUT_MAX_SIDE: u32 = 2048;
/// The largest prediction object read (it may echo the input's data URI).
const API_BODY_LIMIT: usize = 16 << 20;
/// The most output files one prediction may return.
const MAX_OUTPUTS: usize = 8;
/// How often a wait (for a slot, between polls) looks at the cancel flag.
const WATCH_SLICE: Duration = Duration::from_millis(100);
/// The time a cancel call may take, retries included.
const CANCEL_BUDGET: Duration = Duration::from_secs(10);

/// What went wrong between us and the provider; the source of the `StudioError`.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{call}: the provider answered HTTP {status}: {body}")]
    Status { call: &'static str, status: u16, body: String },
    #[error("{call}: the request failed")]
    Transport {
        call: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call}: the circuit breaker is open for another {remaining:?} after repeated failures")]
    CircuitOpen { call: &'static str, remaining: Duration },
    #[error("{call}: the prediction's deadline passed")]
    Deadline { call: &'static str },
    #[error("{call}: the answer is larger than {limit} bytes")]
    TooLarge { call: &'static str, limit: usize },
    #[error("{call}: the answer cannot be read: {detail}")]
    BadAnswer { call: &'static str, detail: String },
    #[error("prediction {id} failed: {error}")]
    Failed { id: String, error: String },
    #[error("prediction {id} ended as {status:?} without our asking")]
    EndedByProvider { id: String, status: String },
    #[error("prediction {id}, output {index}: {detail}")]
    BadOutput { id: String, index: usize, detail: String },
}

/// Why a `RemoteStudio` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSetupError {
    #[error("PROVIDER_URL {0:?} is not a usable http(s) URL")]
    Url(String),
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
}

/// A model provider, shared by every render of the process (hold it in an `Arc`).
pub struct RemoteStudio {
    provider: Provider,
    runtime: Handle,
    limits: UploadLimits,
    config: ProviderConfig,
    slots: Semaphore,
    followed: recovery::Followed,
}

impl std::fmt::Debug for RemoteStudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStudio").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl RemoteStudio {
    /// A studio for `config`'s provider whose HTTP runs on `runtime` (multi-threaded).
    /// Output URLs are fetched through `outputs`, the SSRF-safe client.
    pub fn new(
        config: &ProviderConfig,
        limits: UploadLimits,
        runtime: Handle,
        outputs: petportrait_core::outbound::Outbound,
    ) -> Result<RemoteStudio, RemoteSetupError> {
        Ok(RemoteStudio {
            provider: Provider::new(config, outputs)?,
            runtime,
            limits,
            config: config.clone(),
            slots: Semaphore::new(config.concurrency.max(1)),
            followed: recovery::Followed::default(),
        })
    }

    /// The async body of `render`.
    async fn run(
        &self,
        request: &RenderRequest,
        model: &str,
        input: serde_json::Value,
        ctx: &RenderContext,
    ) -> Result<Vec<RenderedFile>, StudioError> {
        let deadline = Instant::now() + self.config.timeout;
        let _slot = self.take_slot(ctx, deadline).await?;
        ctx.checkpoint(8, "submitting")?;
        let prediction = match self.resume(request, deadline).await? {
            Some(earlier) => earlier,
            None => {
                let created = self.create(model, input, &request.idempotency_key, deadline).await?;
                tracing::info!(prediction.id = %created.id, request.idempotency_key = %request.idempotency_key, "prediction created");
                created
            }
        };
        self.followed.remember(&prediction.id);
        ctx.record_prediction(&prediction.id);
        let mut tracked = Tracked { prediction, ended: false };
        let result = self.follow(&mut tracked, request, ctx, deadline).await;
        if result.is_err() && !tracked.ended {
            self.cancel(&tracked.prediction).await;
        }
        result
    }

    /// A concurrency slot, waiting for one while watching the cancel flag and the deadline.
    async fn take_slot(&self, ctx: &RenderContext, deadline: Instant) -> Result<SemaphorePermit<'_>, StudioError> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        ctx.checkpoint(5, "waiting for the model")?;
        let acquire = self.slots.acquire();
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                permit = &mut acquire => return permit.map_err(|e| StudioError::Unavailable(Box::new(e))),
                () = tokio::time::sleep(WATCH_SLICE) => {
                    if ctx.is_canceled() {
                        return Err(StudioError::Canceled);
                    }
                    if Instant::now() >= deadline {
                        return Err(StudioError::TimedOut { after: self.config.timeout });
                    }
                }
            }
        }
    }

    async fn create(
        &self,
        model: &str,
        input: serde_json::Value,
        idempotency_key: &str,
        deadline: Instant,
    ) -> Result<Prediction, StudioError> {
        // `version` takes `owner/name`, `owner/name:version` or a version id.
        let body = Bytes::from(json!({"version": model, "input": &input}).to_string());
        let url = self.provider.predictions_url();
        let cancel_after = format!("{}s", deadline.saturating_duration_since(Instant::now()).as_secs().max(5));
        let sent_at = chrono::Utc::now();
        let mut lookups = 0;
        loop {
            let error = match self
                .provider
                .call("create", Gate::Breaker, Retries::UnlessAmbiguous, deadline, API_BODY_LIMIT, || {
                    self.provider
                        .request(Method::POST, url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .header("Idempotency-Key", idempotency_key)
                        .header("Cancel-After", cancel_after.as_str())
                        .body(body.clone())
                })
                .await
            {
                Ok(reply) => return read_prediction("create", &reply),
                Err(error) if client::is_ambiguous(&error) && lookups < self.config.retries => error,
                Err(error) => return Err(self.create_error(error)),
            };
            lookups += 1;
            // The provider may still be recording what it made: a moment before looking.
            tokio::time::sleep(self.config.retry_delay).await;
            match self.find_lost(&input, sent_at, deadline).await {
                Ok(Some(found)) => {
                    tracing::warn!(prediction.id = %found.id, error = %petportrait_core::errors::error_chain(&error), "the create's answer was lost; following the prediction it made");
                    return Ok(found);
                }
                Ok(None) => {
                    tracing::warn!(error = %petportrait_core::errors::error_chain(&error), "the create failed and made no prediction; creating again")
                }
                Err(lookup) => {
                    tracing::warn!(error = %petportrait_core::errors::error_chain(&lookup), "could not learn whether a failed create made a prediction; not creating another now");
                    return Err(self.create_error(error));
                }
            }
        }
    }

    /// What a failed create means for the generation.
    fn create_error(&self, error: ProviderError) -> StudioError {
        let ProviderError::Status { status, body, .. } = &error else { return self.transient(error) };
        match *status {
            401 | 403 => {
                tracing::error!(error = %petportrait_core::errors::error_chain(&error), "the model provider refused our credentials: check PROVIDER_TOKEN and the model's access");
                StudioError::Unavailable(Box::new(error))
            }
            // 408 and 429 were retried; their last answer is still transient.
            408 | 429 => StudioError::Unavailable(Box::new(error)),
            // fal.ai-style: 422 `content_policy_violation` on submit.
            400..=499 if protocol::classify_failure(body) == Failure::ContentPolicy => {
                StudioError::ContentPolicy(Box::new(error))
            }
            // Logged as an error by the worker, which fails the generation.
            400..=499 => StudioError::RequestRejected(Box::new(error)),
            _ => StudioError::Unavailable(Box::new(error)),
        }
    }

    /// Polls the prediction to its end, then fetches its outputs.
    async fn follow(
        &self,
        tracked: &mut Tracked,
        request: &RenderRequest,
        ctx: &RenderContext,
        deadline: Instant,
    ) -> Result<Vec<RenderedFile>, StudioError> {
        let mut interval = self.config.poll_interval;
        let mut reported = (8u8, "submitting");
        loop {
            let prediction = &tracked.prediction;
            let progress = match prediction.phase() {
                Phase::Succeeded => {
                    tracked.ended = true;
                    break;
                }
                Phase::Failed => {
                    tracked.ended = true;
                    return Err(failed(prediction));
                }
                Phase::Ended => {
                    tracked.ended = true;
                    let error =
                        ProviderError::EndedByProvider { id: prediction.id.clone(), status: prediction.status.clone() };
                    return Err(StudioError::Unavailable(Box::new(error)));
                }
                Phase::Starting => (10, "starting"),
                Phase::Processing | Phase::Unknown => {
                    (10 + prediction.percent().map_or(0, |p| (u16::from(p) * 3 / 4) as u8), "processing")
                }
            };
            // Progress is written only when it changes (each report is a database
            // write); the cancel flag is read on every poll either way.
            let progress = (progress.0.max(reported.0), progress.1);
            if progress != reported {
                ctx.checkpoint(progress.0, progress.1)?;
                reported = progress;
            } else if ctx.is_canceled() {
                return Err(StudioError::Canceled);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(StudioError::TimedOut { after: self.config.timeout });
            }
            watchful_sleep(ctx, interval.min(remaining)).await?;
            interval = interval.mul_f64(1.5).min(self.config.poll_max_interval);
            tracked.prediction = self.poll(&tracked.prediction, deadline).await?;
        }
        ctx.checkpoint(90, "downloading")?;
        self.fetch_outputs(&tracked.prediction, request, ctx, deadline).await
    }

    async fn poll(&self, prediction: &Prediction, deadline: Instant) -> Result<Prediction, StudioError> {
        let url = self.provider.own_url(prediction.urls.get.as_deref(), &format!("v1/predictions/{}", prediction.id));
        let reply = self
            .provider
            .call("poll", Gate::Breaker, Retries::All, deadline, API_BODY_LIMIT, || self.provider.request(Method::GET, url.clone()))
            .await
            .map_err(|error| {
                if let ProviderError::Status { status: 401 | 403, .. } = error {
                    tracing::error!(error = %petportrait_core::errors::error_chain(&error), "the model provider refused our credentials");
                }
                self.transient(error)
            })?;
        let polled = read_prediction("poll", &reply)?;
        if polled.id != prediction.id {
            let detail = format!("asked for prediction {}, got {}", prediction.id, polled.id);
            return Err(StudioError::Unavailable(Box::new(ProviderError::BadAnswer { call: "poll", detail })));
        }
        Ok(polled)
    }

    /// Best effort, within `CANCEL_BUDGET`, even with the breaker open.
    async fn cancel(&self, prediction: &Prediction) {
        let url = self
            .provider
            .own_url(prediction.urls.cancel.as_deref(), &format!("v1/predictions/{}/cancel", prediction.id));
        let deadline = Instant::now() + CANCEL_BUDGET;
        match self
            .provider
            .call("cancel", Gate::Bypass, Retries::All, deadline, API_BODY_LIMIT, || {
                self.provider.request(Method::POST, url.clone())
            })
            .await
        {
            Ok(_) => tracing::info!(prediction.id = %prediction.id, "prediction canceled at the provider"),
            Err(error) => tracing::warn!(
                prediction.id = %prediction.id,
                error = %petportrait_core::errors::error_chain(&error),
                "could not cancel the prediction; its Cancel-After deadline will end it"
            ),
        }
    }

    fn model(&self, kind: GenerationKind) -> Option<&str> {
        self.config.model(kind)
    }

    /// A provider error another attempt may not meet: the deadline, or unavailable.
    fn transient(&self, error: ProviderError) -> StudioError {
        match error {
            ProviderError::Deadline { .. } => StudioError::TimedOut { after: self.config.timeout },
            other => StudioError::Unavailable(Box::new(other)),
        }
    }
}

impl Studio for RemoteStudio {
    fn render(&self, request: &RenderRequest, ctx: &RenderContext) -> Result<Vec<RenderedFile>, StudioError> {
        let Some(model) = self.model(request.kind) else {
            return Err(StudioError::Unsupported { kind: request.kind.as_str() });
        };
        if find_style(request.kind, &request.style).is_none() {
            return Err(StudioError::UnknownStyle(request.style.clone()));
        }
        ctx.checkpoint(2, "preparing")?;
        let photo = photo_data_uri(request, &self.limits, ctx)?;
        let input = json!({
            "image": photo,
            "kind": request.kind.as_str(),
            "style": request.style,
            "max_side": request.options.max_side,
            "format": request.options.format.as_str(),
        });
        // A blocking thread: `block_on` is allowed here (see the module's notes).
        self.runtime.block_on(self.run(request, model, input, ctx))
    }
}

/// The prediction being followed, and whether the provider ended it (no cancel needed).
struct Tracked {
    prediction: Prediction,
    ended: bool,
}

/// Sleeps, in slices, returning early when the render is canceled.
async fn watchful_sleep(ctx: &RenderContext, duration: Duration) -> Result<(), StudioError> {
    let until = Instant::now() + duration;
    loop {
        if ctx.is_canceled() {
            return Err(StudioError::Canceled);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        tokio::time::sleep(left.min(WATCH_SLICE)).await;
    }
}

fn read_prediction(call: &'static str, reply: &Reply) -> Result<Prediction, StudioError> {
    let prediction: Prediction = serde_json::from_slice(&reply.body).map_err(|e| {
        StudioError::Unavailable(Box::new(ProviderError::BadAnswer { call, detail: format!("not a prediction: {e}") }))
    })?;
    // The id goes into URLs we build.
    if !is_prediction_id(&prediction.id) {
        let detail = format!("prediction id {:?} is not an id", protocol::excerpt(&prediction.id));
        return Err(StudioError::Unavailable(Box::new(ProviderError::BadAnswer { call, detail })));
    }
    Ok(prediction)
}

/// Whether a provider's prediction id is safe in a URL path of ours.
fn is_prediction_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A `failed` prediction, by its error.
fn failed(prediction: &Prediction) -> StudioError {
    let error = ProviderError::Failed { id: prediction.id.clone(), error: prediction.error_text() };
    match prediction.failure() {
        Failure::ContentPolicy => StudioError::ContentPolicy(Box::new(error)),
        Failure::Transient => StudioError::Unavailable(Box::new(error)),
        Failure::Model => StudioError::ModelFailed(Box::new(error)),
    }
}

/// The photo as the provider gets it: checked, upright, bounded, re-encoded as JPEG
/// (which drops its metadata), as a data URI.
pub(crate) fn photo_data_uri(
    request: &RenderRequest,
    limits: &UploadLimits,
    ctx: &RenderContext,
) -> Result<String, StudioError> {
    let loaded = super::load_photo(request, limits, INPUT_MAX_SIDE, ctx.memory())?;
    let mut jpeg = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), 90);
    loaded.photo.write_with_encoder(encoder).map_err(StudioError::Encode)?;
    Ok(format!("data:image/jpeg;base64,{}", BASE64.encode(&jpeg)))
}
