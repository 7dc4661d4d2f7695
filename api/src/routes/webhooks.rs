//! Webhooks sent by the platform: the account's secret (`/v1/me/webhook-secret`), the
//! registered endpoints (`/v1/webhook-endpoints`), their delivery log and redelivery.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use petportrait_core::db::{DeliveryRow, ENDPOINT_ACCOUNT, RedeliverOutcome, WebhookEndpointRow};
use petportrait_core::domain::{EventType, GenerationEventFilter};
use petportrait_core::ids::{DeliveryId, UserId, WebhookEndpointId};
use petportrait_core::time::{now_ms, rfc3339};
use petportrait_core::webhooks::{AccountSecret, SigningSecret, Webhooks};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathId, Query};
use crate::json::JsonBody;
use crate::pagination::{PageRequest, split_page};
use crate::views::Page;

/// A bound on the table and on the fan-out of one event.
const MAX_ENDPOINTS_PER_USER: i64 = 20;
/// Long enough for any real URL.
const MAX_URL_LENGTH: usize = 2048;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountSecretView {
    secret: String,
    created_at: String,
    /// When each previous secret stops signing (after a rotation).
    previous_secrets_expire_at: Vec<String>,
}

impl From<AccountSecret> for AccountSecretView {
    fn from(secret: AccountSecret) -> Self {
        AccountSecretView {
            secret: secret.secret.to_text(),
            created_at: rfc3339(secret.created_at),
            previous_secrets_expire_at: secret.previous_expire_at.into_iter().map(rfc3339).collect(),
        }
    }
}

#[utoipa::path(get, path = "/v1/me/webhook-secret", tag = "webhooks", security(("session" = []), ("bearer" = [])), responses(
    (status = 200, description = "The account's signing secret for per-generation webhooks", body = AccountSecretView),
))]
pub async fn get_webhook_secret(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<AccountSecretView>> {
    Ok(Json(state.services.webhooks.account_secret(user.user_id().as_str()).await?.into()))
}

#[utoipa::path(post, path = "/v1/me/webhook-secret/rotate", tag = "webhooks", security(("session" = []), ("bearer" = [])), responses(
    (status = 200, description = "The new secret; the previous one keeps signing for a while (`previous_secrets_expire_at`)", body = AccountSecretView),
))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<AccountSecretView>> {
    let secret = state.services.webhooks.rotate_account_secret(user.user_id().as_str()).await?;
    tracing::info!(user.id = %user.id, "webhook secret rotated");
    Ok(Json(secret.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    url: String,
    events: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointRequest {
    enabled: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    id: String,
    url: String,
    events: Vec<String>,
    /// In the creation's answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    enabled: bool,
    /// Why it was disabled (410 Gone, or failing for days).
    disabled_reason: Option<String>,
    disabled_at: Option<String>,
    /// Since when every attempt has failed, while it does.
    failing_since: Option<String>,
    last_success_at: Option<String>,
    created_at: String,
}

impl EndpointView {
    fn new(row: WebhookEndpointRow, secret: Option<String>) -> EndpointView {
        EndpointView {
            events: serde_json::from_str(&row.events).unwrap_or_default(),
            id: row.id,
            url: row.url,
            secret,
            enabled: row.enabled != 0,
            disabled_reason: row.disabled_reason,
            disabled_at: row.disabled_at.map(rfc3339),
            failing_since: row.failing_since.map(rfc3339),
            last_success_at: row.last_success_at.map(rfc3339),
            created_at: rfc3339(row.created_at),
        }
    }
}

/// Checks a URL someone wants us to call: a bounded length, http(s), and every address
/// its host resolves to public (unless `WEBHOOK_ALLOW_PRIVATE`). Checked again at each delivery.
pub(crate) async fn check_webhook_url(webhooks: &Webhooks, url: &str) -> ApiResult<String> {
    if url.len() > MAX_URL_LENGTH {
        return Err(ApiError::unprocessable("invalid_webhook_url", "the URL is longer than 2048 characters"));
    }
    webhooks
        .check_url(url)
        .await
        .map_err(|error| ApiError::unprocessable("invalid_webhook_url", format!("the webhook URL is refused: {error}")))
}

#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", security(("session" = []), ("bearer" = [])), request_body = CreateEndpointRequest, responses(
    (status = 201, description = "The endpoint, with its signing secret (shown only here)", body = EndpointView),
    (status = 422, description = "`invalid_webhook_url`: not a public https URL, or too long.\n\n`unknown_event_type`: an event type the platform does not send, or none.\n\n`too_many_endpoints`: the account has the most it may; delete one first."),
))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(request): JsonBody<CreateEndpointRequest>,
) -> ApiResult<Response> {
    let mut events = Vec::with_capacity(request.events.len());
    for name in &request.events {
        let event = EventType::parse(name).ok_or_else(|| {
            ApiError::unprocessable("unknown_event_type", format!("{name:?} is not an event type the platform sends"))
        })?;
        if !events.contains(&event.as_str()) {
            events.push(event.as_str());
        }
    }
    if events.is_empty() {
        return Err(ApiError::unprocessable("unknown_event_type", "events must name at least one event type"));
    }
    let webhooks = &state.services.webhooks;
    let url = check_webhook_url(webhooks, &request.url).await?;
    let user_id = user.user_id();
    let db = &state.services.db;
    if db.count_webhook_endpoints(user_id.as_str()).await? >= MAX_ENDPOINTS_PER_USER {
        return Err(ApiError::unprocessable(
            "too_many_endpoints",
            format!("an account registers at most {MAX_ENDPOINTS_PER_USER} endpoints; delete one first"),
        ));
    }
    let id = WebhookEndpointId::generate().to_string();
    let secret = SigningSecret::generate();
    let row = WebhookEndpointRow {
        id: id.clone(),
        user_id: user_id.to_string(),
        kind: ENDPOINT_ACCOUNT.to_owned(),
        url,
        events: serde_json::to_string(&events).unwrap_or_default(),
        secret: Some(webhooks.seal_endpoint_secret(&id, &secret)),
        enabled: 1,
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        last_success_at: None,
        created_at: now_ms(),
    };
    db.create_webhook_endpoint(&row).await?;
    tracing::info!(user.id = %user.id, webhook.endpoint = %id, "webhook endpoint registered");
    Ok((StatusCode::CREATED, Json(EndpointView::new(row, Some(secret.to_text())))).into_response())
}

#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", security(("session" = []), ("bearer" = [])), responses(
    (status = 200, description = "The caller's endpoints (without secrets); one page", body = Page<EndpointView>),
))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<Page<EndpointView>>> {
    let rows = state.services.db.list_webhook_endpoints(user.user_id().as_str()).await?;
    Ok(Json(Page { data: rows.into_iter().map(|r| EndpointView::new(r, None)).collect(), next_cursor: None }))
}

async fn own_endpoint(state: &AppState, user: &UserId, id: &WebhookEndpointId) -> ApiResult<WebhookEndpointRow> {
    state.services.db.get_webhook_endpoint(id.as_str(), user.as_str()).await?.ok_or_else(ApiError::not_found)
}

#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("session" = []), ("bearer" = [])), params(("id" = String, Path, description = "A webhook endpoint id (`whe_…`)")), responses(
    (status = 200, description = "The endpoint (without its secret)", body = EndpointView),
))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<WebhookEndpointId>,
) -> ApiResult<Json<EndpointView>> {
    Ok(Json(EndpointView::new(own_endpoint(&state, &user.user_id(), &id).await?, None)))
}

/// `PATCH {enabled: true}` turns a disabled endpoint back on (its failures forgotten).
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("session" = []), ("bearer" = [])), params(("id" = String, Path, description = "A webhook endpoint id (`whe_…`)")), request_body = UpdateEndpointRequest, responses(
    (status = 200, description = "The endpoint, enabled again", body = EndpointView),
    (status = 422, description = "`invalid_update`: only `{\"enabled\": true}` can be set."),
))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<WebhookEndpointId>,
    JsonBody(request): JsonBody<UpdateEndpointRequest>,
) -> ApiResult<Json<EndpointView>> {
    let user_id = user.user_id();
    if !request.enabled {
        return Err(ApiError::unprocessable("invalid_update", "only {\"enabled\": true} can be set; DELETE removes"));
    }
    if !state.services.db.enable_webhook_endpoint(id.as_str(), user_id.as_str()).await? {
        return Err(ApiError::not_found());
    }
    Ok(Json(EndpointView::new(own_endpoint(&state, &user_id, &id).await?, None)))
}

#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("session" = []), ("bearer" = [])), params(("id" = String, Path, description = "A webhook endpoint id (`whe_…`)")), responses(
    (status = 204, description = "Deleted; nothing more is sent to it"),
))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<WebhookEndpointId>,
) -> ApiResult<StatusCode> {
    if state.services.db.delete_webhook_endpoint(id.as_str(), user.user_id().as_str()).await? {
        tracing::info!(user.id = %user.id, webhook.endpoint = %id, "webhook endpoint deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    attempt: i64,
    started_at: String,
    duration_ms: i64,
    status_code: Option<i64>,
    error: Option<String>,
    response_excerpt: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    id: String,
    endpoint_id: String,
    event_type: String,
    generation_id: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    status: String,
    next_attempt_at: Option<String>,
    created_at: String,
    completed_at: Option<String>,
    attempts: Vec<AttemptView>,
}

async fn delivery_view(state: &AppState, row: DeliveryRow) -> ApiResult<DeliveryView> {
    let attempts = state.services.db.list_attempts(&row.id).await?;
    Ok(DeliveryView {
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                started_at: rfc3339(a.started_at),
                duration_ms: a.duration_ms,
                status_code: a.status_code,
                error: a.error,
                response_excerpt: a.response_excerpt,
            })
            .collect(),
        next_attempt_at: if row.status == "pending" { row.next_attempt_at.map(rfc3339) } else { None },
        id: row.id,
        endpoint_id: row.endpoint_id,
        event_type: row.event_type,
        generation_id: row.generation_id,
        status: row.status,
        created_at: rfc3339(row.created_at),
        completed_at: row.completed_at.map(rfc3339),
    })
}

#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks", security(("session" = []), ("bearer" = [])), params(("id" = String, Path, description = "A webhook endpoint id (`whe_…`)"), crate::openapi::PageParams), responses(
    (status = 200, description = "The endpoint's deliveries with their attempts, newest first", body = Page<DeliveryView>),
))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<WebhookEndpointId>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let endpoint = own_endpoint(&state, &user.user_id(), &id).await?;
    let rows = state.services.db.list_deliveries(&endpoint.id, page.after(), page.limit + 1).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        data.push(delivery_view(&state, row).await?);
    }
    Ok(Json(Page { data, next_cursor }))
}

/// `POST /v1/webhook-deliveries/{id}/retry`: one more attempt now, with the same
/// `webhook-id` and body (a pending delivery is brought forward instead).
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/retry", tag = "webhooks", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A delivery id (`dlv_…`)"),
), responses(
    (status = 202, description = "One more attempt is scheduled now, with the same `webhook-id` and body"),
    (status = 409, description = "`delivery_in_progress`: an attempt is being made.\n\n`endpoint_disabled`: enable the endpoint first."),
))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<DeliveryId>,
) -> ApiResult<Response> {
    let user_id = user.user_id();
    match state.services.db.redeliver(id.as_str(), user_id.as_str(), now_ms()).await? {
        RedeliverOutcome::NotFound => Err(ApiError::not_found()),
        RedeliverOutcome::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "delivery_in_progress",
            "an attempt of this delivery is being made; look at the log again shortly",
        )),
        RedeliverOutcome::EndpointDisabled => Err(ApiError::new(
            StatusCode::CONFLICT,
            "endpoint_disabled",
            "the endpoint is disabled; PATCH it with {\"enabled\": true} first",
        )),
        RedeliverOutcome::Scheduled => {
            let key = format!("manual-{}", ulid::Ulid::generate());
            state.services.webhooks.push(id.as_str(), &key, Duration::ZERO).await;
            tracing::info!(user.id = %user.id, webhook.delivery = %id, "redelivery requested");
            Ok(StatusCode::ACCEPTED.into_response())
        }
    }
}

/// Parses a generation's `webhook_events_filter` (default: every event).
pub(crate) fn parse_generation_filter(words: Option<&[String]>) -> ApiResult<String> {
    let words: Vec<&str> = match words {
        None => GenerationEventFilter::ALL.iter().map(|w| w.as_str()).collect(),
        Some(words) => {
            let mut parsed = Vec::new();
            for word in words {
                let filter = GenerationEventFilter::parse(word).ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_webhook_events_filter",
                        format!("{word:?} is not one of started, progress, completed"),
                    )
                })?;
                if !parsed.contains(&filter.as_str()) {
                    parsed.push(filter.as_str());
                }
            }
            if parsed.is_empty() {
                return Err(ApiError::unprocessable(
                    "invalid_webhook_events_filter",
                    "webhook_events_filter must name at least one of started, progress, completed",
                ));
            }
            parsed
        }
    };
    Ok(serde_json::to_string(&words).unwrap_or_default())
}
