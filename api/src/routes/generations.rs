//! `POST /v1/generations`, `GET /v1/generations/{id}`, `GET /v1/generations`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petportrait_core::db::{CancelOutcome, CreateOutcome, GenerationFilter, GenerationRow, NewGeneration};
use petportrait_core::domain::{GenerationKind, GenerationStatus, Style, find_style};
use petportrait_core::ids::{GenerationId, UploadId, WebhookEndpointId};
use petportrait_core::output_options::OutputOptions;
use petportrait_core::queue::Dispatch;
use petportrait_core::time::now_ms;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CurrentUser, PollingCaller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathId, Query};
use crate::idempotency::{self, fingerprint, idempotency_key};
use crate::json::{JsonBytes, parse_json};
use crate::pagination::{PageRequest, split_page};
use crate::request_id::RequestId;
use crate::routes::webhooks::{check_webhook_url, parse_generation_filter};
use crate::status_cache::CachedGeneration;
use crate::views::{GenerationView, Page};
use axum::body::Bytes;

/// The body of `POST /v1/generations`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGenerationRequest {
    #[schema(value_type = GenerationKind)]
    kind: String,
    /// An upload of the caller (`POST /v1/uploads`), not expired.
    upload_id: String,
    /// A style of `kind` (GET /v1/styles).
    style: String,
    /// Per kind, as `GET /v1/styles` lists: e.g. `{"max_side": 512, "format": "png"}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    options: Option<serde_json::Map<String, serde_json::Value>>,
    /// An https URL told of this generation's events, signed with the account's secret.
    #[serde(default)]
    webhook: Option<String>,
    /// The event types sent to `webhook` (default: all of a generation's).
    #[serde(default)]
    webhook_events_filter: Option<Vec<String>>,
}

/// How long pollers should wait before asking again while a generation runs.
const POLL_HINT_SECONDS: &str = "1";

#[utoipa::path(post, path = "/v1/generations", tag = "generations", security(("session" = []), ("bearer" = [])), params(
    ("Idempotency-Key" = Option<String>, Header, description = "Up to 255 visible ASCII characters; the same key and body within 24 h answer the same generation"),
), request_body = CreateGenerationRequest, responses(
    (status = 202, description = "Accepted and queued; the credits are held. Poll `Location` (or follow `urls.events`); `Retry-After` says when.", body = GenerationView, headers(("ETag" = String, description = "Changes whenever the generation does"), ("Location" = String, description = "The generation's URL"))),
    (status = 400, description = "`invalid_idempotency_key`: not 1 to 255 visible ASCII characters."),
    (status = 402, description = "`insufficient_credits`: the available balance is lower than the cost."),
    (status = 409, description = "`idempotency_in_progress`: the first request with this key is still being answered."),
    (status = 422, description = "`unknown_kind`, `unknown_style`: not in the catalogue.\n\n`invalid_options`: options the kind does not take, or out of range.\n\n`upload_not_found`, `upload_expired`: the upload is not the caller's or has expired.\n\n`invalid_webhook_url`, `invalid_webhook_events_filter`, `unknown_event_type`: the per-generation webhook.\n\n`idempotency_conflict`: the key was used with another body."),
    (status = 429, description = "`rate_limited`: more than RATE_LIMIT_GENERATIONS allows for one user (`Retry-After`; `RateLimit` and `RateLimit-Policy` as in the IETF draft).", headers(
        ("Retry-After" = u32, description = "Seconds until the request may be sent again"),
        ("RateLimit-Policy" = String, description = "`\"generations\";q=<requests>;w=<seconds>`"),
        ("RateLimit" = String, description = "`\"generations\";r=<remaining>;t=<seconds until the allowance is whole>`"),
    )),
    (status = 503, description = "`model_unavailable`: no model server of this style is ready (`Retry-After`)."),
))]
pub async fn create_generation(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let print = fingerprint(&body);
    let user_id = user.user_id();
    let db = &state.services.db;

    if let Some(key) = &key
        && let Some(existing) = db.find_generation_by_idempotency_key(&user_id, key).await?
    {
        return replay(&state, existing, &print).await;
    }

    // A replay (above) is not counted: it creates nothing.
    crate::rate_limits::check(&state, "generations", user_id.as_str(), state.limits.generations).await?;
    let request: CreateGenerationRequest = parse_json(&body)?;
    let style = resolve_style(&request.kind, &request.style)?;
    let kind = style.kind;
    // Holding credits for a generation no model server can run would only end in a
    // refund after every retry; the client is told now, and when to ask again.
    if crate::models::available_styles(&state.models, db, kind).await?.is_some_and(|ready| !ready.contains(style.id)) {
        return Err(ApiError::unavailable(
            "model_unavailable",
            format!("the model for {} {} is not available right now; try again later", kind.as_str(), style.id),
            crate::models::retry_after_secs(&state.models),
        ));
    }
    let webhook = match &request.webhook {
        None if request.webhook_events_filter.is_some() => {
            return Err(ApiError::unprocessable(
                "invalid_webhook_events_filter",
                "webhook_events_filter needs a webhook URL",
            ));
        }
        None => None,
        Some(url) => Some((
            check_webhook_url(&state.services.webhooks, url).await?,
            parse_generation_filter(request.webhook_events_filter.as_deref())?,
        )),
    };
    let options_map = request.options.unwrap_or_default();
    OutputOptions::parse_for(kind, &options_map)
        .map_err(|e| ApiError::unprocessable("invalid_options", e.to_string()))?;
    let options = serde_json::Value::Object(options_map).to_string();
    if options.len() > 4096 {
        return Err(ApiError::unprocessable("invalid_options", "options must be at most 4 KiB of JSON"));
    }
    // A malformed id names no upload, like an unknown one.
    let no_such_upload = || ApiError::unprocessable("upload_not_found", "no such upload");
    let upload_id = UploadId::parse(&request.upload_id).ok_or_else(no_such_upload)?;
    let upload = db.get_upload_of_user(upload_id.as_str(), &user_id).await?.ok_or_else(no_such_upload)?;
    let now = now_ms();
    if upload.expires_at <= now {
        return Err(ApiError::unprocessable("upload_expired", "the upload has expired; upload the photo again"));
    }

    // The URL's endpoint row is made first (and shared by the user's generations that
    // name it); a generation that is then refused leaves it unused, which is harmless.
    let endpoint = match &webhook {
        Some((url, _)) => {
            let new_id = WebhookEndpointId::generate().to_string();
            Some(db.generation_endpoint(&new_id, user_id.as_str(), url, "[]", now).await?)
        }
        None => None,
    };
    let id = GenerationId::generate();
    let dispatch = Dispatch::Create.plan(&id);
    let dispatch_text = dispatch.task().to_string();
    let new = NewGeneration {
        id: &id,
        user_id: &user_id,
        kind,
        style: style.id,
        options: &options,
        upload_id: &upload.id,
        cost: style.credits,
        idempotency_key: key.as_deref(),
        request_fingerprint: key.as_ref().map(|_| print.as_str()),
        dispatch_task: &dispatch_text,
        webhook: endpoint.as_deref().zip(webhook.as_ref().map(|(_, filter)| filter.as_str())),
        request_id: request_id.as_ref().map(|id| id.0.0.as_str()),
    };
    let row = match db.create_generation(&new, now).await? {
        CreateOutcome::Created(row) => row,
        CreateOutcome::InsufficientCredits => {
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                format!("this generation costs {} credits; your available balance is lower", style.credits),
            ));
        }
        CreateOutcome::DuplicateKey => {
            // A concurrent request with the same key won the race; answer as it did.
            let key = key.as_deref().unwrap_or_default();
            return match db.find_generation_by_idempotency_key(&user_id, key).await? {
                Some(existing) => replay(&state, existing, &print).await,
                None => Err(idempotency::in_progress()),
            };
        }
    };
    // The answer describes the generation as created (queued, with its position), so it
    // is built before a worker can pick the job up.
    let response = respond(&state, &row, StatusCode::ACCEPTED, false).await?;
    // The row is the system of record: if this enqueue fails, the scheduler's sweep of
    // stalled generations dispatches it, so the request still succeeds.
    if let Err(error) = state.services.queue.dispatch(&dispatch, Duration::ZERO).await {
        tracing::error!(generation.id = %id, error = %petportrait_core::errors::error_chain(&error), "enqueue failed; the scheduler will dispatch it");
    }
    tracing::info!(generation.id = %id, generation.kind = kind.as_str(), generation.style = style.id, "generation created");
    Ok(response)
}

/// Answers a repeated `Idempotency-Key`: the same body replays, another body conflicts.
async fn replay(state: &AppState, existing: GenerationRow, print: &str) -> ApiResult<Response> {
    if existing.request_fingerprint.as_deref() != Some(print) {
        return Err(idempotency::conflict());
    }
    respond(state, &existing, StatusCode::ACCEPTED, true).await
}

/// The generation object with its `Location`, `ETag` and polling hints.
async fn respond(state: &AppState, row: &GenerationRow, status: StatusCode, replayed: bool) -> ApiResult<Response> {
    let body = Bytes::from(serde_json::to_vec(&build_view(state, row).await?).unwrap_or_default());
    let mut response = generation_response(status, body, &row.id, etag(row), row.status.is_terminal());
    if replayed {
        response.headers_mut().insert(idempotency::REPLAYED_HEADER, idempotency::replayed_value());
    }
    Ok(response)
}

fn etag(row: &GenerationRow) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}.{}\"", row.id, row.version)).unwrap_or(HeaderValue::from_static("\"0\""))
}

pub(crate) async fn build_view(state: &AppState, row: &GenerationRow) -> ApiResult<GenerationView> {
    Ok(GenerationView::load(&state.services.db, row, "").await?)
}

/// `GET /v1/generations/{id}`: from this process's short-lived cache when it holds the
/// answer (`status_cache.rs`), else from the database (and then kept).
#[utoipa::path(get, path = "/v1/generations/{id}", tag = "generations", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A generation id (`gen_…`)"),
    ("If-None-Match" = Option<String>, Header, description = "The `ETag` of the last answer"),
), responses(
    (status = 200, description = "The generation; `Retry-After` while it is not terminal", body = GenerationView, headers(("ETag" = String, description = "Changes whenever the generation does"), ("Location" = String, description = "The generation's URL"))),
    (status = 304, description = "Unchanged since `If-None-Match`"),
))]
pub async fn get_generation(
    State(state): State<AppState>,
    PollingCaller(user): PollingCaller,
    PathId(id): PathId<GenerationId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let cache = &state.live.status;
    let if_none_match = headers.get(header::IF_NONE_MATCH);
    if let Some(cached) = cache.generation(id.as_str()).filter(|c| c.user_id == user.as_str()) {
        if if_none_match.is_some_and(|v| v.as_bytes() == cached.etag.as_bytes()) {
            return Ok(not_modified(cached.etag, cached.terminal));
        }
        if let Some(body) = cached.body {
            return Ok(generation_response(StatusCode::OK, body, id.as_str(), cached.etag, cached.terminal));
        }
    }
    let epoch = cache.epoch();
    let row = state.services.db.get_generation_of_user(id.as_str(), &user).await?.ok_or_else(ApiError::not_found)?;
    let tag = etag(&row);
    let terminal = row.status.is_terminal();
    if if_none_match.is_some_and(|v| v.as_bytes() == tag.as_bytes()) {
        let answer = CachedGeneration { user_id: row.user_id.clone(), etag: tag.clone(), terminal, body: None };
        cache.keep_generation(row.id.clone(), answer, epoch);
        return Ok(not_modified(tag, terminal));
    }
    let body = Bytes::from(serde_json::to_vec(&build_view(&state, &row).await?).unwrap_or_default());
    // A queued generation's position moves without a change of its own: never kept.
    let kept_body = (row.status != GenerationStatus::Queued).then(|| body.clone());
    let answer = CachedGeneration { user_id: row.user_id.clone(), etag: tag.clone(), terminal, body: kept_body };
    cache.keep_generation(row.id.clone(), answer, epoch);
    Ok(generation_response(StatusCode::OK, body, id.as_str(), tag, terminal))
}

fn not_modified(tag: HeaderValue, terminal: bool) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response.headers_mut().insert(header::ETAG, tag);
    if !terminal {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(POLL_HINT_SECONDS));
    }
    response
}

/// A generation object (JSON bytes) with its `Location`, `ETag` and polling hints.
fn generation_response(status: StatusCode, body: Bytes, id: &str, tag: HeaderValue, terminal: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/generations/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::ETAG, tag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !terminal {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(POLL_HINT_SECONDS));
    }
    response
}

#[utoipa::path(get, path = "/v1/generations", tag = "generations", security(("session" = []), ("bearer" = [])), params(
    crate::openapi::PageParams,
    ("status" = Option<GenerationStatus>, Query, description = "Only generations in this state"),
    ("kind" = Option<GenerationKind>, Query, description = "Only generations of this kind"),
), responses(
    (status = 200, description = "The caller's generations, newest first", body = Page<GenerationView>),
))]
pub async fn list_generations(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<axum::Json<Page<GenerationView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(
            GenerationStatus::parse(s)
                .ok_or_else(|| ApiError::unprocessable("invalid_parameter", format!("unknown status {s:?}")))?,
        ),
    };
    let kind = match query.get("kind").map(String::as_str) {
        None | Some("") => None,
        Some(k) => Some(
            GenerationKind::parse(k)
                .ok_or_else(|| ApiError::unprocessable("invalid_parameter", format!("unknown kind {k:?}")))?,
        ),
    };
    let filter = GenerationFilter { status, kind, after: page.after(), limit: page.limit + 1 };
    let rows = state.services.db.list_generations(&user.user_id(), &filter).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        data.push(build_view(&state, row).await?);
    }
    Ok(axum::Json(Page { data, next_cursor }))
}

/// `POST /v1/generations/{id}/cancel`: queued → canceled with the hold released;
/// running → canceled with the charge refunded, the worker stopping at its next
/// checkpoint; already ended → 409 `already_completed`.
#[utoipa::path(post, path = "/v1/generations/{id}/cancel", tag = "generations", security(("session" = []), ("bearer" = [])), params(("id" = String, Path, description = "A generation id (`gen_…`)")), responses(
    (status = 202, description = "Canceled: the hold released (queued) or the charge refunded (running)", body = GenerationView, headers(("ETag" = String, description = "Changes whenever the generation does"), ("Location" = String, description = "The generation's URL"))),
    (status = 409, description = "`already_completed`: terminal states never change."),
))]
pub async fn cancel_generation(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<GenerationId>,
) -> ApiResult<Response> {
    let db = &state.services.db;
    match db.cancel_generation(id.as_str(), &user.user_id(), now_ms()).await? {
        CancelOutcome::NotFound => Err(ApiError::not_found()),
        CancelOutcome::AlreadyEnded => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_completed",
            "the generation has already ended; terminal states never change",
        )),
        CancelOutcome::Canceled => {
            tracing::info!(generation.id = %id, "generation canceled");
            // This process's status cache forgets it now: the feed's notice comes back
            // through Redis only after this answer.
            state.live.status.forget_generation(id.as_str());
            state.services.changes.publish(id.as_str()).await;
            state.services.webhooks.announce(id.as_str()).await;
            let row = db.get_generation_of_user(id.as_str(), &user.user_id()).await?.ok_or_else(ApiError::not_found)?;
            respond(&state, &row, StatusCode::ACCEPTED, false).await
        }
    }
}

/// The catalogue entry a request names, or the 422 that says which part is unknown.
pub(crate) fn resolve_style(kind: &str, style: &str) -> ApiResult<&'static Style> {
    let kind = GenerationKind::parse(kind)
        .ok_or_else(|| ApiError::unprocessable("unknown_kind", "kind must be portrait, music or sculpture"))?;
    find_style(kind, style).ok_or_else(|| {
        ApiError::unprocessable(
            "unknown_style",
            format!("{} has no style {style:?}; see GET /v1/styles", kind.as_str()),
        )
    })
}
