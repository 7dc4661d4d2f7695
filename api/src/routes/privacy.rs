//! `/v1/privacy/…`: the user's privacy requests. An export request queues the job that
//! writes the archive; a deletion request ends the account's use at once (in one
//! transaction) and queues the job that removes its data. Each answers 202 with the
//! request: the new one, or the open request of that kind when there is one.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use petportrait_core::db::{PrivacyRequestRow, RequestOutcome};
use petportrait_core::domain::{PrivacyKind, PrivacyStatus};
use petportrait_core::ids::PrivacyRequestId;
use petportrait_core::privacy::audit::{self, AuditAction};
use petportrait_core::privacy::requests::{self, PrivacyError};
use petportrait_core::time::{now_ms, rfc3339};
use petportrait_core::views::PrivacyRequestView;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CurrentUser, cleared_session_cookie};
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathId, Query};
use crate::json::JsonBody;
use crate::pagination::{PageRequest, split_page};
use crate::routes::files::serve_object;
use crate::views::Page;

impl From<PrivacyError> for ApiError {
    fn from(error: PrivacyError) -> ApiError {
        ApiError::internal(&error)
    }
}

fn view(row: &PrivacyRequestRow) -> PrivacyRequestView {
    PrivacyRequestView::new(row, "", now_ms())
}

/// 202 with the request: the new one, or the open one of its kind (at most one is open
/// per user); `Location` names it.
fn answer(outcome: &RequestOutcome) -> ApiResult<Response> {
    let row = outcome.row();
    let mut response = (StatusCode::ACCEPTED, Json(view(row))).into_response();
    let location = HeaderValue::from_str(&format!("/v1/privacy/requests/{}", row.id))?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

#[utoipa::path(post, path = "/v1/privacy/exports", tag = "privacy", security(("session" = []), ("bearer" = [])), responses(
    (status = 202, description = "Received: the export is being prepared (`privacy_export.ready` is sent when it is ready), or the export request already open", body = PrivacyRequestView,
        headers(("Location" = String, description = "The request"))),
))]
pub async fn request_export(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Response> {
    let outcome = requests::request_export(&state.services, &user, now_ms()).await?;
    tracing::info!(user.id = %user.id, privacy.request = %outcome.row().id, "export requested");
    answer(&outcome)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletionRequest {
    /// Exactly `DELETE`: the account and its data are deleted, which cannot be undone.
    #[schema(pattern = "^DELETE$")]
    confirm: String,
}

#[utoipa::path(post, path = "/v1/privacy/deletion", tag = "privacy", security(("session" = []), ("bearer" = [])), request_body = DeletionRequest, responses(
    (status = 202, description = "Received: the account no longer works (every session and token is revoked, unfinished generations are canceled with their credits given back); a job deletes its data. The session cookie is cleared.", body = PrivacyRequestView,
        headers(("Location" = String, description = "The request"), ("Set-Cookie" = String, description = "Clears the session cookie"))),
    (status = 422, description = "`confirmation_required`: `confirm` is not `DELETE`."),
))]
pub async fn request_deletion(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    JsonBody(request): JsonBody<DeletionRequest>,
) -> ApiResult<Response> {
    if request.confirm != "DELETE" {
        return Err(ApiError::unprocessable("confirmation_required", "confirm must be exactly \"DELETE\""));
    }
    let (outcome, closed) = requests::request_deletion(&state.services, &user, now_ms()).await?;
    // Credentials this process cached are forgotten now (other API processes within 2 s).
    state.live.status.forget_all();
    tracing::info!(
        user.id = %user.id,
        privacy.request = %outcome.row().id,
        sessions = closed.sessions,
        tokens = closed.tokens,
        generations = closed.generations_canceled.len(),
        "account deletion requested; the account is closed"
    );
    let mut response = answer(&outcome)?;
    response.headers_mut().insert(header::SET_COOKIE, cleared_session_cookie(&state));
    Ok(response)
}

#[utoipa::path(get, path = "/v1/privacy/requests", tag = "privacy", security(("session" = []), ("bearer" = [])), params(crate::openapi::PageParams), responses(
    (status = 200, description = "The caller's privacy requests, newest first", body = Page<PrivacyRequestView>),
))]
pub async fn list_requests(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<PrivacyRequestView>>> {
    let page = PageRequest::parse(query.get("limit").map(String::as_str), query.get("cursor").map(String::as_str))?;
    let rows = state.services.db.privacy_requests_of_user(&user.id, page.after(), page.limit + 1).await?;
    let (rows, next_cursor) = split_page(rows, page.limit, |r| (r.created_at, r.id.as_str()));
    Ok(Json(Page { data: rows.iter().map(view).collect(), next_cursor }))
}

#[utoipa::path(get, path = "/v1/privacy/requests/{id}", tag = "privacy", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A privacy request id (`prq_…`)"),
), responses(
    (status = 200, description = "The request; a completed export has its `download_url` until `expires_at`", body = PrivacyRequestView),
))]
pub async fn get_request(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<PrivacyRequestId>,
) -> ApiResult<Json<PrivacyRequestView>> {
    let row =
        state.services.db.privacy_request_of_user(id.as_str(), &user.id).await?.ok_or_else(ApiError::not_found)?;
    Ok(Json(view(&row)))
}

#[utoipa::path(get, path = "/v1/privacy/requests/{id}/download", tag = "privacy", security(("session" = []), ("bearer" = [])), params(
    ("id" = String, Path, description = "A completed export request's id (`prq_…`)"),
    ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
    ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a copy the client has"),
), responses(
    (status = 200, description = "The export: a ZIP of JSON and CSV documents, the files still held and a manifest", content_type = "application/zip"),
    (status = 206, description = "The byte range asked for", content_type = "application/zip"),
    (status = 302, description = "A short-lived link to the object store (when it has a public endpoint)"),
    (status = 304, description = "Unchanged since `If-None-Match`"),
    (status = 409, description = "`export_not_ready`: the export is not ready yet, or failed (the detail says why)."),
    (status = 410, description = "`gone`: the export's link has expired and the archive was deleted."),
    (status = 416, description = "`range_not_satisfiable`: the range is outside the file (`Content-Range: bytes */size`)."),
))]
pub async fn download_export(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    PathId(id): PathId<PrivacyRequestId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let db = &state.services.db;
    let row = db
        .privacy_request_of_user(id.as_str(), &user.id)
        .await?
        .filter(|r| r.kind == PrivacyKind::Export)
        .ok_or_else(ApiError::not_found)?;
    let now = now_ms();
    if row.status == PrivacyStatus::Failed {
        let why = row.error_code.as_deref().unwrap_or("failed");
        return Err(ApiError::new(StatusCode::CONFLICT, "export_not_ready", format!("the export failed ({why})")));
    }
    let Some(object_id) = row.object_id.as_deref() else {
        return Err(ApiError::new(StatusCode::CONFLICT, "export_not_ready", "the export is not ready yet"));
    };
    let object = db
        .get_object_of_user(object_id, &user.user_id())
        .await?
        .filter(|o| o.is_available(now) && row.expires_at.is_some_and(|at| at > now))
        .ok_or_else(|| ApiError::gone("the export has expired and was deleted"))?;
    let filename = format!("petportrait-export-{}.zip", &rfc3339(row.created_at)[..10]);
    let response = serve_object(&state, &object, &filename, &headers).await?;
    // A download is recorded when it starts: the whole file, a link to it, or a range
    // from its first byte (a download manager's first request); a range continuing a
    // download, or a 304, is the same download.
    let from_start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|range| range.trim().starts_with("bytes=0-"));
    let starts = match response.status() {
        StatusCode::OK | StatusCode::FOUND => true,
        StatusCode::PARTIAL_CONTENT => from_start,
        _ => false,
    };
    if starts {
        let detail = serde_json::json!({ "request": row.id });
        let entry =
            audit::entry(state.services.accounts.keyring(), &user.id, AuditAction::ExportDownloaded, detail, now);
        db.record_audit(&entry).await?;
    }
    Ok(response)
}
